/* The prototype says static; the definition below does not repeat it, and C gives it internal
 * linkage all the same: the binary has only a local `scaled`. */
static int scaled(int n);

static int calls;

int state(void)
{
    return calls;
}

__attribute__((noinline)) int scaled(int n)
{
    return n * 0 + 20;
}

int value(void)
{
    calls++;
    return scaled(calls);
}
