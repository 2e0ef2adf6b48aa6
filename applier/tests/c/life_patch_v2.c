/* `value` of revision v2 of the lifecycle target. */
extern int counter;

int value(int who) {
    counter++;
    __asm__ volatile("" ::"r"(who));
    return 2;
}

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
