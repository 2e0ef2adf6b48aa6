#include <stdio.h>
#include <stdlib.h>
static int calls;

static __attribute__((noinline)) int mix(int x, int k)
{
    int r = 0;
    for (int i = 0; i < k; i++)
        r += (x ^ i) * calls;
    return r;
}

__attribute__((cold, noinline)) static void report(int n)
{
    fprintf(stderr, "bad %d\n", n);
}

int state(void)
{
    return calls;
}

__attribute__((noinline)) int value(void)
{
    calls++;
    if (calls < 0) {
        report(calls);
        abort();
    }
    return mix(3, 4) / calls + mix(5, 4) / calls;
}
