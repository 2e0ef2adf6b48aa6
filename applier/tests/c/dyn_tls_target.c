/* Target of link_live.rs's dynamic TLS case: dlopens the library named by argv[1] and prints
 * `tick tls N` every 10 ms from its `dyn_tls_next`. */
#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    void *lib = argc > 1 ? dlopen(argv[1], RTLD_NOW) : NULL;
    int (*next)(void) = lib ? (int (*)(void))dlsym(lib, "dyn_tls_next") : NULL;
    if (!next) {
        printf("no library: %s\n", dlerror());
        return 1;
    }
    for (;;) {
        printf("tick tls %d\n", next());
        usleep(10000);
    }
}
