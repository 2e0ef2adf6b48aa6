static int calls;

int state(void)
{
    return calls;
}

int value(void)
{
    calls++;
    return 1;
}
