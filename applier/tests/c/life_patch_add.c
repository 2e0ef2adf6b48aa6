/* `value` of a revision that adds a function. */
extern int counter;

__attribute__((noinline)) int added_four(int who) {
    __asm__ volatile("" ::"r"(who));
    return 4;
}

int value(int who) {
    counter++;
    return added_four(who);
}

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
