int extra = 7;

static int calls;

int state(void)
{
    return calls;
}

int value(void)
{
    calls++;
    return extra;
}
