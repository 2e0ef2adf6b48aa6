/* A new `g` for the unwind target. */
int g(void) {
    __asm__ volatile("");
    return 2;
}

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
