/* One patch replacing a function of libl.so (13 bytes) and one of the dlopened plugin. */
int helper(void);

int lib_short(int x) { return x * 7 + 4; }

int plugin_value(void) { return helper() + 2; }

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
