/* Library of tests/kill_tool.rs's resolver case: an IFUNC the target never calls (every apply of
 * the patch runs its resolver in the target) and a `__thread` variable the library uses itself
 * (every apply reads a thread's thread pointer); and of its jump island case, `far`, which a
 * patch replaces along with the executable's `value`. */
static int two_impl(void) { return 2; }
static void *two_resolver(void) { return two_impl; }
int two(void) __attribute__((ifunc("two_resolver")));

__thread int kill_tls;
int kill_tls_next(void) { return ++kill_tls; }
static int far_calls;
int far(int x) { far_calls++; return x + 1; }
