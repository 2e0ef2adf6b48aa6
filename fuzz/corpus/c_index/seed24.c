static int calls;

/* noinline and noclone keep a local symbol for scale in the binary, the case this test is about. */
static __attribute__((noinline, noclone)) int scale(int x)
{
    return x * 4;
}

int state(void)
{
    return calls;
}

int value(void)
{
    calls++;
    return scale(10);
}
