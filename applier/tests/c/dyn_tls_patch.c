/* `dyn_tls_next` of dyn_tls_lib.c, v2: the library's `__thread` variable through the
 * initial-exec model, as the builder compiles patches. */
extern __thread int dyn_tls __attribute__((tls_model("initial-exec")));

int dyn_tls_next(void) {
    dyn_tls += 1000;
    return dyn_tls;
}

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
