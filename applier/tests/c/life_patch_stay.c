/* A new `stay` for the lifecycle target that never returns: its thread stays in the patch. */
#include <unistd.h>

extern volatile int done;

void stay(void) {
    for (;;) {
        usleep(1000);
        done += 2;
    }
}

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
