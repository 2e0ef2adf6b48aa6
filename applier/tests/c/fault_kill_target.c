/* Target of tests/kill_tool.rs: the main thread prints `n=N value=V` every 10 ms (N counts up by
 * one, V is what value() returns: 1, or 2 once patched); two workers sleep in a loop. */
#include <pthread.h>
#include <stdio.h>
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

int main(void) {
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    pthread_create(&t, NULL, worker, NULL);
    for (long n = 0;; n++) {
        printf("n=%ld value=%d\n", n, value());
        fflush(stdout);
        usleep(10000);
    }
}
