/* Sleeps 200 ms in a loop and prints how long each sleep took. A nanosleep that fails (EINTR:
 * the syscall restart was broken) is reported and ends the program. Also exposes a function that
 * is never called, so a test can overwrite its (read-only) text. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

__attribute__((noinline, used)) int never_called(int x) {
    return x * 7 + 3;
}

static long long now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

int main(void) {
    int (*volatile fp)(int) = never_called;
    printf("FUNC %p\n", (void *)fp);
    printf("READY\n");
    fflush(stdout);
    for (;;) {
        struct timespec req = {0, 200 * 1000 * 1000};
        long long t0 = now_us();
        if (nanosleep(&req, NULL) != 0) {
            printf("ERROR nanosleep: %s\n", strerror(errno));
            fflush(stdout);
            return 2;
        }
        printf("SLEPT %lld\n", now_us() - t0);
        fflush(stdout);
    }
}
