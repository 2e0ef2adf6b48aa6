enum state { IDLE, BUSY, DONE };

static enum state current = DONE;

static int calls;

int state(void)
{
    return calls;
}

int value(void)
{
    calls++;
    return current == DONE ? 2 : 0;
}
