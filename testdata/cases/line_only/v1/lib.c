#include <assert.h>

static int calls;

int state(void)
{
    return calls;
}

int value(void)
{
    calls++;
    assert(calls > 0);
    return 4;
}
