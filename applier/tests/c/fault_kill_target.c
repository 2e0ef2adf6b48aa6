/* Target of tests/kill_tool.rs: the main thread prints `pid=P n=N value=V` every 10 ms (N counts
 * up by one, V is what value() returns: 1, or 2 once patched); two workers sleep in a loop. Run as
 * `fault_kill_target fork`, it first forks a child (a family of two, both printing; the child
 * dies with its parent). Run as `fault_kill_target linger`, a third worker calls value() in a
 * loop, and its calls spend 20 ms inside it (so `--wait-return` waits for that frame). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static __thread int lingering;

__attribute__((noinline)) int value(void) {
    __asm__ volatile("");
    if (lingering)
        usleep(20000);
    return 1;
}

static void *lingerer(void *arg) {
    (void)arg;
    lingering = 1;
    for (;;) {
        value();
        usleep(1000);
    }
    return NULL;
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
    if (argc > 1 && strcmp(argv[1], "linger") == 0)
        pthread_create(&t, NULL, lingerer, NULL);
    for (long n = 0;; n++) {
        printf("pid=%d n=%ld value=%d\n", (int)getpid(), n, value());
        fflush(stdout);
        usleep(10000);
    }
}
