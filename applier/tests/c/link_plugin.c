/* Library the binding tests' target dlopens: its `helper` is its own (the executable's is not
 * exported). */
__attribute__((noinline)) int helper(void) { return 70; }

int plugin_value(void) { return helper() + 1; }

/* Also defined by libdep.so, which the second plugin needs: that plugin's calls reach libdep's. */
int shared_dep(void) { return 1; }
int shared_dep2(void) { return 100; }
