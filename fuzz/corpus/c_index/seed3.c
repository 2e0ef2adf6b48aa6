int twice(int x);

static int calls;

/* noinline and noclone keep bump a local function of the binary that the patch must bind to. */
static __attribute__((noinline, noclone)) int bump(int x)
{
    calls++;
    return x + 1;
}

int state(void)
{
    return calls;
}

int value(void)
{
    return bump(10) + twice(500);
}
