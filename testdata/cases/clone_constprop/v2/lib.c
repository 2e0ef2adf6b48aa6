#include <stdio.h>
#include <stdlib.h>
static int calls;

static __attribute__((noinline)) int mix(int x, int k)
{
    int r = 0;
    for (int i = 0; i < k; i++)
        r += (x + i) * calls;
    return r;
}

int state(void)
{
    return calls;
}

int value(void)
{
    calls++;
    if (__builtin_expect(calls < 0, 0)) {
        fprintf(stderr, "negative calls %d\n", calls);
        abort();
    }
    return mix(3, 4) / calls + mix(5, 4) / calls;
}
