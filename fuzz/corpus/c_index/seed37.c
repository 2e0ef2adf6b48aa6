/* Second file of the target: a static counter, a global counter and small functions. */
static int calls;
int counter;

__attribute__((noinline)) int helper(int x) { return x + 1; }

__attribute__((noinline)) int tiny(void) { return 0; }

__attribute__((noinline, used)) static int scale(int x) { return x * 5 + calls; }

int value(void) {
    calls++;
    counter++;
    return calls + scale(0) - calls;
}
