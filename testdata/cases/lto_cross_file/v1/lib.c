int rate(int x);
static int calls;
static volatile int base = 14;
int state(void) { return calls; }
__attribute__((noinline)) int value(void)
{
    calls++;
    return rate(base);
}

/* Calls `rate` from lib.c but is used nowhere: not in the binary, not patched. */
int spare(void)
{
    return rate(7);
}
