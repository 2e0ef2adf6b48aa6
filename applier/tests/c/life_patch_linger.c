/* A new `linger` for the lifecycle target: it stays as long, counting by two. */
#include <time.h>
#include <unistd.h>

extern volatile int done;
extern int linger_ms;
long since_ms(const struct timespec *from);

void linger(void) {
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (since_ms(&start) < linger_ms) {
        usleep(1000);
        done += 2;
    }
}

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
