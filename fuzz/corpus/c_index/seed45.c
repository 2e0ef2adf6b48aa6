/* Forks a child that asks its parent to trace it (PTRACE_TRACEME) and then just sleeps, so a test
 * can try to seize a process that already has a tracer. With argument "thread", only a second
 * thread of the child is traced (its main thread is free), so a seize fails half-way through the
 * thread list. The child dies with its parent. */
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <unistd.h>

static volatile int traced;

static void *traced_thread(void *arg) {
    (void)arg;
    if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) == 0)
        traced = 1;
    else
        traced = -1;
    for (;;)
        sleep(1);
    return NULL;
}

int main(int argc, char **argv) {
    int thread_mode = argc > 1 && strcmp(argv[1], "thread") == 0;
    pid_t child = fork();
    if (child < 0)
        return 1;
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (thread_mode) {
            pthread_t t;
            if (pthread_create(&t, NULL, traced_thread, NULL) != 0)
                return 1;
            while (traced == 0)
                usleep(1000);
            if (traced < 0)
                return 1;
        } else if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0) {
            return 1;
        }
        printf("CHILD %d\n", (int)getpid());
        fflush(stdout);
        for (;;)
            sleep(1);
    }
    for (;;)
        pause();
}
