/* The threadwise commit's target: N threads (argv[1]) call outer() -> inner() in a tight loop,
 * both replaced by the patch, and check that each call chain is all old (11) or all new (22);
 * a signal handler calls the chain too, and the main thread keeps creating and joining
 * short-lived threads that do the same, and signals the workers. Built at -O0 so both entries
 * start with a frame push (no branch within the bytes a jump covers). With `stay`, one more thread
 * stays in inner's old code forever; with `fork`, the main thread forks a child every round; with
 * `vfork`, it vforks children (instead of creating threads) that call the chain in the parent's
 * memory (so a call chain that mixes is counted there too), then exit or exec `/bin/true` by
 * turns. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* A thread with i_stay set never leaves inner's old code (its frame sleeps). */
static __thread int i_stay;
__attribute__((noinline)) int inner(void) {
    while (i_stay) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, 0);
    }
    return 1;
}
__attribute__((noinline)) int outer(void) {
    int v = inner();
    return v * 10 + 1;
}



static atomic_long mixes, calls, news, churned, forks, fork_deaths;
static atomic_int switched_workers;

static int check(void) {
    int r = outer();
    atomic_fetch_add(&calls, 1);
    if (r != 11 && r != 22) {
        atomic_fetch_add(&mixes, 1);
    }
    return r;
}

static void on_signal(int sig) {
    (void)sig;
    check();
}

static void *worker(void *arg) {
    (void)arg;
    int seen_new = 0;
    for (;;) {
        if (check() == 22 && !seen_new) {
            seen_new = 1;
            atomic_fetch_add(&switched_workers, 1);
        }
        if (seen_new) {
            atomic_fetch_add(&news, 1);
        }
    }
    return 0;
}

/* A thread whose outer frame never returns: outer() is entered through a copy of its start. */
static void *stayer(void *arg) {
    (void)arg;
    i_stay = 1;
    outer();
    return 0;
}

static void *short_lived(void *arg) {
    (void)arg;
    for (int i = 0; i < 1000; i++) {
        check();
    }
    atomic_fetch_add(&churned, 1);
    return 0;
}

/* Waits for a child and counts it, and counts it dead when a signal killed it. */
static void reap(pid_t child) {
    int status = 0;
    waitpid(child, &status, 0);
    atomic_fetch_add(&forks, 1);
    if (WIFSIGNALED(status)) {
        atomic_fetch_add(&fork_deaths, 1);
    }
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 64;
    int staying = argc > 2 && strcmp(argv[2], "stay") == 0;
    int forking = argc > 2 && strcmp(argv[2], "fork") == 0;
    int vforking = argc > 2 && strcmp(argv[2], "vfork") == 0;
    signal(SIGUSR1, on_signal);
    pthread_t *t = calloc((size_t)n, sizeof *t);
    for (int i = 0; i < n; i++) {
        pthread_create(&t[i], 0, worker, 0);
    }
    setvbuf(stdout, 0, _IOLBF, 0);
    if (staying) {
        pthread_t s;
        pthread_create(&s, 0, stayer, 0);
    }
    for (long round = 0;; round++) {
        if (!vforking) {
            pthread_t s;
            pthread_create(&s, 0, short_lived, 0);
            pthread_join(s, 0);
        }
        if (n > 0) {
            pthread_kill(t[round % n], SIGUSR1);
        }
        if (forking) {
            /* A child calls the chain and exits (with a breakpoint copied into it, it dies). */
            pid_t child = fork();
            if (child == 0) {
                for (int i = 0; i < 100; i++) {
                    outer();
                }
                _exit(0);
            }
            reap(child);
        }
        for (int k = 0; vforking && k < 8; k++) {
            /* Not routed past a breakpoint in the shared memory, a child dies. */
            pid_t child = vfork();
            if (child == 0) {
                for (int i = 0; i < 100; i++) {
                    check();
                }
                if (k % 2) {
                    execl("/bin/true", "true", (char *)0);
                }
                _exit(0);
            }
            reap(child);
        }
        if (round % 20 == 0) {
            printf("%smixes=%ld calls=%ld switched=%d churned=%ld forks=%ld fork_deaths=%ld now=%d\n",
                   staying ? "staying " : "", atomic_load(&mixes),
                   atomic_load(&calls), atomic_load(&switched_workers), atomic_load(&churned),
                   atomic_load(&forks), atomic_load(&fork_deaths), outer());
        }
        struct timespec ts = {0, 500000};
        nanosleep(&ts, 0);
    }
}
