static int calls;

int state(void)
{
    return calls;
}

int value(void)
{
    static int seen;
    calls++;
    seen++;
    return 10 + (seen - calls);
}
