/* `value` of the kill-tool target, v2, and `far` of its library in one patch (compiled with the
 * manifest naming both): the library is mapped far from the executable, so the apply maps a jump
 * island near it. */
int value(void) {
    __asm__ volatile("");
    return 2;
}

int far(int x) { return x + 2; }

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
