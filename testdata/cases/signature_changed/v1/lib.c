int add(int a)
{
    return a + 1;
}

static int calls;

int state(void)
{
    return calls;
}

int value(void)
{
    calls++;
    return add(1);
}
