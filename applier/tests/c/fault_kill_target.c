/* Target of tests/kill_tool.rs: the main thread prints `pid=P n=N value=V` every 10 ms (N counts
 * up by one, V is what value() returns: 1, or 2 once patched); two workers sleep in a loop. Run as
 * `fault_kill_target fork`, it first forks a child (a family of two, both printing; the child
 * dies with its parent). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

__attribute__((noinline)) int value(void) {
    __asm__ volatile("");
    return 1;
}

static void *worker(void *arg) {
    (void)arg;
    for (;;)
        usleep(3000);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "fork") == 0) {
        pid_t parent = getpid();
        if (fork() == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                return 1;
        }
    }
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    pthread_create(&t, NULL, worker, NULL);
    for (long n = 0;; n++) {
        printf("pid=%d n=%ld value=%d\n", (int)getpid(), n, value());
        fflush(stdout);
        usleep(10000);
    }
}
