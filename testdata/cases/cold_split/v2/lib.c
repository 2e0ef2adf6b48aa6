#include <stdio.h>
#include <stdlib.h>
static int calls;
int state(void) { return calls; }
__attribute__((cold, noinline)) static void report(int n) { fprintf(stderr, "bad %d\n", n); }
int value(void)
{
    calls++;
    if (calls < 0) {
        report(calls);
        exit(3);
    }
    return 43;
}
