/* `dyn_tls_next` of dyn_tls_lib.c reaching `dyn_tls_start`, a function of the library, as if
 * it were a `__thread` variable (general-dynamic): the definition is not thread-local. */
extern __thread int dyn_tls_start;

int dyn_tls_next(void) { return dyn_tls_start; }

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
