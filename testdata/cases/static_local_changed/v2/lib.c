static int calls;

int state(void)
{
    return calls;
}

int value(void)
{
    static int step = 2;
    calls++;
    return step;
}
