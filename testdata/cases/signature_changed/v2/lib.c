int add(int a, int b)
{
    return a + b;
}

static int calls;

int state(void)
{
    return calls;
}

int value(void)
{
    calls++;
    return add(1, 1);
}
