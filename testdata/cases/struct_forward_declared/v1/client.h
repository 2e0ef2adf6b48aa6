/* The forward declaration comes first, as in real headers; the definition below decides the layout. */
struct client;

int client_fd(const struct client *c);

struct client {
    int fd;
    const char *name;
};
