/* `value` calling `who`, which the preload library and libl.so both define and nobody calls. */
int who(void);

int value(void) { return 400 + who(); }

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
