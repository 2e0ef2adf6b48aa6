/* A thread that called outer() -> inner() deep in its stack has exited and been joined: glibc
 * keeps its stack for the next thread, and the return address into outer() stays in it (the
 * exit path's frames do not reach that far down). The process prints where: the thread's
 * descriptor (pthread_self, at the top of its stack) and the return address inner() saw. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Cleared once printed: a global pointing into outer() would block the apply by itself. */
static void *seen_return;
static __thread int recording;

__attribute__((noinline)) int inner(void) {
    if (recording) {
        seen_return = __builtin_return_address(0);
    }
    return 1;
}
__attribute__((noinline)) int outer(void) {
    int v = inner();
    return v * 10 + 1;
}

static __attribute__((noinline)) int deep(int n) {
    volatile char pad[8192];
    memset((char *)pad, n, sizeof pad);
    return outer() + pad[0] - n;
}

static pthread_t descriptor;

static void *once(void *arg) {
    (void)arg;
    descriptor = pthread_self();
    recording = 1;
    deep(1);
    return 0;
}

int main(void) {
    setvbuf(stdout, 0, _IOLBF, 0);
    pthread_t t;
    pthread_create(&t, 0, once, 0);
    pthread_join(t, 0);
    printf("joined descriptor %lu return %lu\n", (unsigned long)descriptor,
           (unsigned long)seen_return);
    seen_return = 0;
    for (;;) {
        printf("now=%d\n", outer());
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, 0);
    }
}
