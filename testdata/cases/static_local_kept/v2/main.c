/* Driver of static_local_kept: `calls` is a static local of value(); it must keep counting. */
#include <stdio.h>
#include <unistd.h>

extern int version;
int value(void);

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (unsigned tick = 0;; tick++) {
        int calls = value();
        printf("tick=%u calls=%d version=%d\n", tick, calls, version);
        usleep(20000);
    }
}
