/* Target of link_live.rs's dynamic TLS cases: dlopens the library named by argv[1]; threads
 * 0-2 set their own `dyn_tls` to 1000000 * i and print `tick t I tls N` every 10 ms from
 * `dyn_tls_next`. Once the file argv[2] exists (when given), thread 3 starts and does the same
 * without setting its value first: its block is allocated by its first `dyn_tls_next`. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static void (*start_at)(int);
static int (*next)(void);

static void *run(void *arg) {
    int i = (int)(long)arg;
    if (i < 3)
        start_at(1000000 * i);
    for (;;) {
        printf("tick t %d tls %d\n", i, next());
        usleep(10000);
    }
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    void *lib = argc > 1 ? dlopen(argv[1], RTLD_NOW) : NULL;
    start_at = lib ? (void (*)(int))dlsym(lib, "dyn_tls_start") : NULL;
    next = lib ? (int (*)(void))dlsym(lib, "dyn_tls_next") : NULL;
    if (!start_at || !next) {
        printf("no library: %s\n", dlerror());
        return 1;
    }
    pthread_t threads[4];
    for (long i = 0; i < 3; i++)
        pthread_create(&threads[i], NULL, run, (void *)i);
    if (argc > 2) {
        while (access(argv[2], F_OK) != 0)
            usleep(1000);
        pthread_create(&threads[3], NULL, run, (void *)3L);
    }
    pthread_join(threads[0], NULL);
    return 0;
}
