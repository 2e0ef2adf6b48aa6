struct conn {
    int flags;
    int fd;
    const char *name;
};

static struct conn current = {.fd = 5, .name = "db"};

static int calls;

int state(void)
{
    return calls;
}

int value(void)
{
    calls++;
    return current.fd + current.flags;
}
