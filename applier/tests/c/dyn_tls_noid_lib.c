/* A library with a `__thread` variable its own code never reaches: no `DTPMOD64` GOT slot of it
 * tells its TLS module id, for link_live.rs's refusal. Loaded like dyn_tls_lib.c. */
__thread int dyn_tls = 7;

void dyn_tls_start(int base) { (void)base; }

int dyn_tls_next(void) { return 1; }
