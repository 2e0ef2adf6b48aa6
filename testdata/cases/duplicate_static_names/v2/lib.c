int other(void);

static int helper(void)
{
    return 1;
}

static int calls;

int state(void)
{
    return calls;
}

int value(void)
{
    calls++;
    return helper() + other();
}
