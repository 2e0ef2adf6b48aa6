/* A family member and a vfork child: forks a child that waits in pause(), prints `forked=PID`,
 * then vforks a child that sleeps (before any exec) while the parent waits in the kernel. Both
 * children die with the parent (PR_SET_PDEATHSIG). */
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    setvbuf(stdout, 0, _IOLBF, 0);
    pid_t member = fork();
    if (member == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (;;) {
            pause();
        }
    }
    printf("forked=%d\n", (int)member);
    pid_t spawned = vfork();
    if (spawned == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        sleep(60);
        _exit(0);
    }
    waitpid(spawned, 0, 0);
    for (;;) {
        pause();
    }
}
