/* `value` of the kill-tool target, v2 through the library: 2 from the IFUNC `two`, which nothing
 * resolved, and a write to the library's `__thread` variable. A plain object. */
int two(void);
extern __thread int kill_tls __attribute__((tls_model("initial-exec")));

int value(void) {
    kill_tls++;
    return two();
}
