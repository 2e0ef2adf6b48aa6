/* A new `f` for the unwind target that never returns: it loops, calling a helper that sleeps in
 * nanosleep, so a stop finds the worker with its pc in libc and return addresses in this code. */
#include <time.h>

extern volatile int f_state;
extern volatile int spins;

__attribute__((noinline)) static void nap(void) {
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, 0);
    __asm__ volatile("");
}

void f(void) {
    f_state = 2;
    for (;;) {
        nap();
        spins += 2;
    }
}

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
