/* `value` calling the IFUNC `bad_pick`, whose resolver returns the address of a variable. */
int bad_pick(void);

int value(void) { return bad_pick(); }

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
