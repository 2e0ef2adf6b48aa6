/* A target that is already being traced (by its parent, through PTRACE_TRACEME), so that nobody
 * else may attach to it: hotpatch must refuse cleanly and leave it running. */
#include <stdio.h>
#include <sys/ptrace.h>
#include <unistd.h>

int state(void);
int value(void);

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0) {
        perror("PTRACE_TRACEME");
        return 1;
    }
    for (unsigned tick = 0;; tick++) {
        int v = value();
        printf("tick=%u state=%d value=%d\n", tick, state(), v);
        usleep(20000);
    }
}
