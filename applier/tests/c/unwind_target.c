/* Target of the unwind tests: a worker thread calls f() every 5 ms;
 * the main thread prints `tick N g G f F` every 20 ms, where G is g()'s value and F is f_state
 * (2 once a patched f() runs). */
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

volatile int f_state = 1;
volatile int spins;

__attribute__((noinline)) void f(void) {
    spins++;
    __asm__ volatile("nop; nop; nop; nop; nop; nop");
}

__attribute__((noinline)) int g(void) {
    __asm__ volatile("");
    return 1;
}

static void *worker(void *arg) {
    (void)arg;
    struct timespec ts = {0, 5000000};
    for (;;) {
        f();
        nanosleep(&ts, 0);
    }
    return 0;
}

int main(void) {
    pthread_t thread;
    pthread_create(&thread, 0, worker, 0);
    for (unsigned long i = 0;; i++) {
        printf("tick %lu g %d f %d\n", i, g(), f_state);
        fflush(stdout);
        usleep(20000);
    }
}
