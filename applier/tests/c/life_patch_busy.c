/* A new `busy` for the lifecycle target. */
#include <unistd.h>

extern volatile int done;

void busy(void) {
    for (;;) {
        usleep(2000);
        done += 2;
    }
}

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
