/* Library of tests/kill_tool.rs's resolver case: an IFUNC the target never calls (every apply of
 * the patch runs its resolver in the target) and a `__thread` variable the library uses itself
 * (every apply reads a thread's thread pointer). */
static int two_impl(void) { return 2; }
static void *two_resolver(void) { return two_impl; }
int two(void) __attribute__((ifunc("two_resolver")));

__thread int kill_tls;
int kill_tls_next(void) { return ++kill_tls; }
