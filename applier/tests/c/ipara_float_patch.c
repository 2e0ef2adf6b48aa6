/* `tick` now using vector registers (all ones: NaN as a double), which its caller keeps live. */
#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif

int tick(int x) {
    __asm__ volatile("pcmpeqd %%xmm0, %%xmm0\n\tpcmpeqd %%xmm1, %%xmm1\n\tpcmpeqd %%xmm2, %%xmm2" ::: "xmm0", "xmm1", "xmm2");
    return (x ^ 0x5a) & 0xff;
}
