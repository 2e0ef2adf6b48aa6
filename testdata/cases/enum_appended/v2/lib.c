enum state { IDLE, BUSY, DONE, FAILED };

static enum state current = DONE;

static int calls;

int state(void)
{
    return calls;
}

int value(void)
{
    calls++;
    return current == DONE ? 3 : 0;
}
