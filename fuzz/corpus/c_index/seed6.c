/* Calls the library only through a table of function pointers filled at start-up. */
#include <stdio.h>
#include <unistd.h>

int state(void);
int value(void);

static int (*volatile handlers[2])(void) = {state, value};

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (unsigned tick = 0;; tick++) {
        int v = handlers[1]();
        printf("tick=%u state=%d value=%d\n", tick, handlers[0](), v);
        usleep(20000);
    }
}
