/* tick7 using r10 and r11, which its unpatched caller keeps live across the call. */
#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif

long tick7(long a, long b, long c, long d, long e, long f, long g) {
    __asm__ volatile("mov $1, %%r10d\n\tmov $2, %%r11d" ::: "r10", "r11");
    return (a ^ b ^ c ^ d ^ e ^ f ^ g ^ 0x5a) & 0xff;
}
