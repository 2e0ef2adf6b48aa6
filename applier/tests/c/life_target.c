/* Target of the lifecycle tests (list, revert, stacking, waiting for threads). argv[1] picks what
 * the extra threads do; the main thread prints `tick N value V counter C` every 50 ms.
 *   threads N  N workers call value() in a loop and print `w T value V`
 *   slow       one worker prints `enter`, spends 1 s inside slow(), prints `left`
 *   busy       one worker never leaves busy() (it sleeps in a loop inside it)
 *   stay       one worker calls stay() every 20 ms
 *   churn      a thread is created about every millisecond; each calls value() once and exits
 *   quiet      no worker; the main thread only sleeps (nothing in memory changes)
 *   linger MS  one worker prints `enter`, stays MS ms (default 2000) inside linger(), which then
 *              returns, prints `left`, sleeps 100 ms, and again */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int counter;
volatile int done;
int linger_ms = 2000;

/* Milliseconds since `from`. */
long since_ms(const struct timespec *from) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - from->tv_sec) * 1000 + (now.tv_nsec - from->tv_nsec) / 1000000;
}

__attribute__((noinline)) int value(int who) {
    counter++;
    __asm__ volatile("" ::"r"(who));
    return 1;
}

__attribute__((noinline)) void slow(void) {
    usleep(1000000);
    done++;
}

__attribute__((noinline)) void busy(void) {
    for (;;) {
        usleep(1000);
        done++;
    }
}

__attribute__((noinline)) void stay(void) {
    done++;
    __asm__ volatile("nop; nop; nop; nop; nop; nop");
}

__attribute__((noinline)) void linger(void) {
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (since_ms(&start) < linger_ms) {
        usleep(1000);
        done++;
    }
}

static void *linger_worker(void *arg) {
    (void)arg;
    for (;;) {
        printf("enter\n");
        fflush(stdout);
        linger();
        printf("left\n");
        fflush(stdout);
        usleep(100000);
    }
    return 0;
}

static void *worker(void *arg) {
    long who = (long)arg;
    for (;;) {
        int v = value((int)who);
        printf("w %ld value %d\n", who, v);
        fflush(stdout);
        usleep(20000);
    }
    return 0;
}

static void *slow_worker(void *arg) {
    (void)arg;
    usleep(100000);
    printf("enter\n");
    fflush(stdout);
    slow();
    printf("left\n");
    fflush(stdout);
    return 0;
}

static void *busy_worker(void *arg) {
    (void)arg;
    busy();
    return 0;
}

static void *short_lived(void *arg) {
    (void)arg;
    value(-2);
    return 0;
}

static void *churner(void *arg) {
    (void)arg;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (;;) {
        pthread_t t;
        pthread_create(&t, &attr, short_lived, 0);
        usleep(1000);
    }
    return 0;
}

static void *stay_worker(void *arg) {
    (void)arg;
    for (;;) {
        stay();
        usleep(20000);
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "threads";
    pthread_t thread;
    if (strcmp(mode, "threads") == 0) {
        long n = argc > 2 ? atol(argv[2]) : 1;
        for (long i = 0; i < n; i++) {
            pthread_create(&thread, 0, worker, (void *)i);
        }
    } else if (strcmp(mode, "slow") == 0) {
        pthread_create(&thread, 0, slow_worker, 0);
    } else if (strcmp(mode, "busy") == 0) {
        pthread_create(&thread, 0, busy_worker, 0);
    } else if (strcmp(mode, "stay") == 0) {
        pthread_create(&thread, 0, stay_worker, 0);
    } else if (strcmp(mode, "churn") == 0) {
        pthread_create(&thread, 0, churner, 0);
    } else if (strcmp(mode, "linger") == 0) {
        linger_ms = argc > 2 ? atoi(argv[2]) : 2000;
        pthread_create(&thread, 0, linger_worker, 0);
    } else if (strcmp(mode, "quiet") == 0) {
        printf("ready\n");
        fflush(stdout);
        for (;;) {
            pause();
        }
    }
    for (unsigned long i = 0;; i++) {
        int v = value(-1);
        printf("tick %lu value %d counter %d\n", i, v, counter);
        fflush(stdout);
        usleep(50000);
    }
}
