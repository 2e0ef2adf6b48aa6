/* A new `slow` for the lifecycle target. */
#include <unistd.h>

extern volatile int done;

void slow(void) {
    usleep(1000);
    done += 2;
}

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
