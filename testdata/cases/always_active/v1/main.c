/* Shared driver of the end-to-end cases: once per tick it calls the case's library and prints
 * one line, so the harness sees the behaviour change (value) and the state survive (state, tick).
 * A case that needs its own driver ships its own main.c. */
#include <stdio.h>
#include <unistd.h>

int state(void);
int value(void);

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (unsigned tick = 0;; tick++) {
        int v = value();
        printf("tick=%u state=%d value=%d\n", tick, state(), v);
        usleep(20000);
    }
}
