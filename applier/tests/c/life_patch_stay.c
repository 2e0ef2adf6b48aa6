/* A new `stay` for the lifecycle target that never returns: its thread stays in the patch. It
 * says so once it is in, so the test waits for that instead of guessing a time. */
#include <unistd.h>

extern volatile int done;

void stay(void) {
    static const char entered[] = "in the patched stay\n";
    (void)!write(1, entered, sizeof entered - 1);
    for (;;) {
        usleep(1000);
        done += 2;
    }
}

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
