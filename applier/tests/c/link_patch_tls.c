/* `lib_tls_next` of libl.so: the library's `__thread` variable through the initial-exec model. */
extern __thread int lib_tls __attribute__((tls_model("initial-exec")));

int lib_tls_next(void) {
    lib_tls += 1000;
    return lib_tls;
}

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
