/* The same `tick`, compiled apart from its callers, now using rcx, rdx and rsi (an inline asm
 * standing for a bigger body): without help it would wreck the caller's loop state. */
#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif

int tick(int x) {
    __asm__ volatile("mov $12345, %%ecx\n\tmov $8, %%edx\n\tmov $777, %%esi" ::: "rcx", "rdx", "rsi");
    return (x ^ 0x5a) & 0xff;
}
