/* Starts N worker threads (argv[1], default 8) that each increment their own counter; the main
 * thread prints the smallest and the total count every 20 ms. With a second argument "exitmain",
 * a printer thread does the printing and the main thread exits (pthread_exit), leaving a zombie
 * thread-group leader. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_THREADS 64
static unsigned long counters[MAX_THREADS];

static void *worker(void *arg) {
    unsigned long *c = arg;
    for (;;)
        __atomic_fetch_add(c, 1, __ATOMIC_RELAXED);
    return NULL;
}

static void *printer(void *arg);

int main(int argc, char **argv) {
    static int n;
    n = argc > 1 ? atoi(argv[1]) : 8;
    if (n < 1 || n > MAX_THREADS)
        return 1;
    for (int i = 0; i < n; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, &counters[i]) != 0)
            return 1;
    }
    printf("READY\n");
    fflush(stdout);
    if (argc > 2) {
        pthread_t p;
        if (pthread_create(&p, NULL, printer, &n) != 0)
            return 1;
        pthread_exit(NULL);
    }
    printer(&n);
    return 0;
}

static void *printer(void *arg) {
    int n = *(int *)arg;
    for (;;) {
        struct timespec req = {0, 20 * 1000 * 1000};
        nanosleep(&req, NULL);
        unsigned long min = (unsigned long)-1, total = 0;
        for (int i = 0; i < n; i++) {
            unsigned long v = __atomic_load_n(&counters[i], __ATOMIC_RELAXED);
            total += v;
            if (v < min)
                min = v;
        }
        printf("COUNT %lu %lu\n", min, total);
        fflush(stdout);
    }
    return NULL;
}
