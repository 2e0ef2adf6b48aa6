/* Library the binding tests' target dlopens: its `helper` is its own (the executable's is not
 * exported). */
__attribute__((noinline)) int helper(void) { return 70; }

int plugin_value(void) { return helper() + 1; }
