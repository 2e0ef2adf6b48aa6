/* Target of the binding tests: linked against libl.so (link_lib.c); with arguments, dlopens those
 * libraries (link_plugin.c, link_plugin2.c) first; with `quiet`, prints `ready` and only sleeps
 * in pause(). Prints one line at start (what its own code reaches: `sleep` and
 * `vget@VER_1`), then `tick value V short S long L get G tls T prot R plugin P plugin2 Q
 * helper H ...` every 20 ms. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

extern int lib_counter;
int lib_short(int);
int lib_long(int);
int lib_get(void);
int lib_tls_next(void);
int lib_prot_user(void);
int vget_old(void);
__asm__(".symver vget_old, vget@VER_1");

__attribute__((noinline, noipa)) int value(void) { return 1; }

/* Not exported: a dlopened library's own `helper` is what its code reaches. */
__attribute__((noinline, noipa)) int helper(void) { return 7; }

/* Exported (--export-dynamic-symbol), yet libl.so's own calls reach its protected `prot_fn`; and
 * its hidden `hid_fn`, not this one. */
__attribute__((noinline, noipa)) int prot_fn(void) { return 50; }
__attribute__((noinline, noipa)) int hid_fn(void) { return 30; }

int main(int argc, char **argv) {
    int (*plugin)(void) = 0;
    if (argc > 1 && strcmp(argv[1], "quiet") == 0) {
        puts("ready");
        fflush(stdout);
        for (;;)
            pause();
    }
    int (*plugin2)(void) = 0;
    if (argc > 1) {
        void *handle = dlopen(argv[1], RTLD_NOW);
        plugin = handle ? (int (*)(void))dlsym(handle, "plugin_value") : 0;
    }
    if (argc > 2) {
        void *handle = dlopen(argv[2], RTLD_NOW);
        plugin2 = handle ? (int (*)(void))dlsym(handle, "plugin2_value") : 0;
    }
    printf("start sleep %u vget %d\n", sleep(0), vget_old());
    fflush(stdout);
    for (;;) {
        lib_counter++;
        printf("tick value %d short %d long %d get %d tls %d prot %d plugin %d plugin2 %d helper "
               "%d %d %d\n",
               value(), lib_short(1), lib_long(1), lib_get(), lib_tls_next(), lib_prot_user(),
               plugin ? plugin() : -1, plugin2 ? plugin2() : -1, helper(), prot_fn(), hid_fn());
        fflush(stdout);
        usleep(20000);
    }
}
