/* `value` calling both versions of `vget`: VER_1 by name, the default (VER_2) plainly. */
int vget_old(void);
__asm__(".symver vget_old, vget@VER_1");
int vget(void);

int value(void) { return 200 + vget_old() * 10 + vget(); }

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
