/* A library with a `__thread` variable in the general-dynamic model, for link_live.rs: loaded
 * with dlopen, its TLS is dynamic (a block per thread, allocated on first use). */
__thread int dyn_tls;

int dyn_tls_next(void) { return ++dyn_tls; }
