/* Two-thread target: a worker spins forever inside the first bytes of spin(); the main thread
 * prints value() in a loop. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

__attribute__((noinline)) void spin(void) { __asm__ volatile("nop; nop; 1: pause; jmp 1b"); }

int counter;

__attribute__((noinline)) int helper(int x) { return x + 1; }

__attribute__((noinline)) int value(void) {
    counter++;
    return counter;
}

static void *worker(void *arg) {
    (void)arg;
    spin();
    return 0;
}

int main(void) {
    pthread_t thread;
    pthread_create(&thread, 0, worker, 0);
    int (*volatile fp)(void) = value;
    for (unsigned long i = 0;; i++) {
        int v = value();
        printf("tick %lu value %d ptr %d counter %d\n", i, v, fp(), counter);
        fflush(stdout);
        usleep(50000);
    }
}
