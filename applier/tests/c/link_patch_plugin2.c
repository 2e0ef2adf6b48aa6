/* `plugin2_value` of the second dlopened plugin calling `shared_dep2`, which it never called
 * before: its dependency's, not the first plugin's. */
int shared_dep2(void);

int plugin2_value(void) { return shared_dep2() + 20; }

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
