static int calls;

static int scale(int x)
{
    return x * 2;
}

int state(void)
{
    return calls;
}

__attribute__((noinline)) int bonus(void)
{
    return scale(1);
}

int value(void)
{
    calls++;
    return scale(21) + bonus();
}
