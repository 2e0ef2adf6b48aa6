/* `dyn_tls_next` of dyn_tls_lib.c, v2: the library's `__thread` variable through the
 * general-dynamic model (`-fPIC`'s default for an extern `__thread`), as the library's own code
 * reaches it: `__tls_get_addr` finds the calling thread's block. */
extern __thread int dyn_tls;

int dyn_tls_next(void) {
    dyn_tls += 1000;
    return dyn_tls;
}

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
