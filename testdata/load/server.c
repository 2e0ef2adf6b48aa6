/* Load-test server (tests/load.rs): a threaded TCP server on 127.0.0.1. It listens on port 0,
 * prints `port=N`, and serves line requests on persistent connections with WORKERS threads that
 * share the listening socket. `REQ id k` is answered by handle_request (handler.c, the function
 * v2 changes); `STATS` answers the global request counter without counting itself. The process
 * exits by itself after MAX_SECONDS, so nothing outlives a test even if its guard never ran. */
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WORKERS 8
#define MAX_SECONDS 300

long requests; /* every request handle_request served: the state that must survive */

int handle_request(long id, long k, char *reply, size_t size);

static int listener;

/* Writes all of `len` bytes. */
static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static void serve(int fd)
{
    char in[4096], reply[256];
    size_t used = 0;
    for (;;) {
        ssize_t n = read(fd, in + used, sizeof in - 1 - used);
        if (n <= 0)
            return;
        used += (size_t)n;
        char *start = in, *end;
        while ((end = memchr(start, '\n', used - (size_t)(start - in))) != NULL) {
            *end = '\0';
            long id, k;
            int len;
            if (strcmp(start, "STATS") == 0)
                len = snprintf(reply, sizeof reply, "STATS %ld\n",
                               __atomic_load_n(&requests, __ATOMIC_SEQ_CST));
            else if (sscanf(start, "REQ %ld %ld", &id, &k) == 2)
                len = handle_request(id, k, reply, sizeof reply);
            else
                len = snprintf(reply, sizeof reply, "ERR bad request\n");
            if (write_all(fd, reply, (size_t)len) != 0)
                return;
            start = end + 1;
        }
        used -= (size_t)(start - in);
        memmove(in, start, used);
        if (used == sizeof in - 1)
            return; /* a line too long: drop the connection */
    }
}

static void *worker(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept(listener, NULL, NULL);
        if (fd < 0)
            continue;
        serve(fd);
        close(fd);
    }
    return NULL;
}

static void *watchdog(void *arg)
{
    (void)arg;
    sleep(MAX_SECONDS);
    _exit(2);
    return NULL;
}

int main(void)
{
    struct sockaddr_in addr;
    socklen_t addr_len = sizeof addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    listener = socket(AF_INET, SOCK_STREAM, 0);
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(listener, 64) != 0 || getsockname(listener, (struct sockaddr *)&addr, &addr_len) != 0) {
        perror("listen");
        return 1;
    }
    pthread_t id;
    pthread_create(&id, NULL, watchdog, NULL);
    for (int i = 0; i < WORKERS; i++)
        pthread_create(&id, NULL, worker, NULL);
    printf("port=%d\n", ntohs(addr.sin_port));
    fflush(stdout);
    pthread_join(id, NULL);
    return 0;
}
