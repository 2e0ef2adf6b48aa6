/* main shares its file with the patched function; it calls it, and takes its address, but
 * its own compiled code does not change (value is never inlined): main is left alone. */
#include <stdio.h>
#include <unistd.h>

static int calls;

__attribute__((noinline)) int value(void)
{
    calls++;
    return 2;
}

int state(void)
{
    return calls;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* The address is taken and kept, never called: taking an address is not a call. */
    int (*volatile keep)(void) = value;
    (void)keep;
    for (unsigned tick = 0;; tick++) {
        int v = value();
        printf("tick=%u state=%d value=%d\n", tick, state(), v);
        usleep(20000);
    }
}
