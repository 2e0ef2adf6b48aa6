/* main inlines the static helper that changes: its own compiled code changes, and a running
 * main never returns, so it cannot take the new code. */
#include <stdio.h>
#include <unistd.h>

static int calls;

static int rate(void)
{
    return 1;
}

__attribute__((noinline)) int value(void)
{
    calls++;
    return rate() * 10;
}

int state(void)
{
    return calls;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (unsigned tick = 0;; tick++) {
        int v = value();
        printf("tick=%u state=%d value=%d direct=%d\n", tick, state(), v, rate());
        usleep(20000);
    }
}
