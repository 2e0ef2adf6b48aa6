/* Target program for the applier tests: loops forever, printing what value() returns when called
 * directly and through a function pointer stored before any patch. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int value(void);
int tiny(void);
extern int counter;
int (*volatile fp)(void);
int (*volatile tp)(void);

__attribute__((noinline, used)) static int scale(int x) { return x * 3 + 1; }

int main(int argc, char **argv) {
    (void)argc;
    fp = value;
    tp = tiny;
    size_t n = strlen(argv[0]);
    for (unsigned long i = 0;; i++) {
        int v = value();
        int w = fp();
        printf("tick %lu value %d ptr %d counter %d tiny %d scale %d len %zu\n", i, v, w, counter,
               tp(), scale((int)i), n);
        fflush(stdout);
        n = strlen(argv[(int)(i % 1)]);
        usleep(50000);
    }
}
