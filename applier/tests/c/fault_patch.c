/* `value` of revision v2 of the fault target. */
int value(void) {
    __asm__ volatile("");
    return 2;
}

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
