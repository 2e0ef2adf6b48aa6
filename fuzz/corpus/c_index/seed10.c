static int calls;

static int scale(int x)
{
    return x * 3;
}

int state(void)
{
    return calls;
}

int value(void)
{
    calls++;
    return scale(21);
}
