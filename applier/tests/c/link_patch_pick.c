/* `value` calling the IFUNC `pick` that nothing in the process has called yet. */
int pick(void);

int value(void) { return 300 + pick(); }

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
