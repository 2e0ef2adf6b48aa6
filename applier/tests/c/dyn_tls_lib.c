/* A library with `__thread` variables in the general-dynamic model, for link_live.rs: loaded
 * with dlopen, its TLS is dynamic (a block per thread, allocated on first use). `dyn_tls_seen`
 * comes first, so `dyn_tls` is not at offset 0 of the block. */
__thread long dyn_tls_seen[3] = {1, 2, 3};
__thread int dyn_tls;

void dyn_tls_start(int base) {
    dyn_tls = base;
    dyn_tls_seen[0] = base;
}

int dyn_tls_next(void) { return ++dyn_tls; }
