struct point {
    int x; /* horizontal */
    int y; /* vertical, added a comment */
};

static struct point origin = {3, 4};

static int calls;

int state(void)
{
    return calls;
}

int value(void)
{
    calls++;
    return origin.x + origin.y;
}
