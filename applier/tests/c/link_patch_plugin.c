/* `plugin_value` of the dlopened library: its `helper` call must reach the library's own. */
int helper(void);

int plugin_value(void) { return helper() + 2; }

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
