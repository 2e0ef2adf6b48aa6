/* A caller that gcc -O2 (-fipa-ra) lets keep its loop state in call-clobbered registers
 * (rcx, rdx, rsi) across its calls of the small same-file leaf `tick`, which it knows leaves
 * them alone. The counter grows by exactly one per line while that state survives. */
#include <stdio.h>
#include <unistd.h>

__attribute__((noinline)) int tick(int x) { return (x ^ 0x5a) & 0xff; }

__attribute__((noinline)) long advance(long counter) {
    long acc = 0;
    for (int i = 0; i < 8; i++)
        acc += tick(i);
    return counter + (acc == 732 ? 1 : 1000000);
}

int main(void) {
    long counter = 0;
    for (;;) {
        counter = advance(counter);
        printf("counter %ld\n", counter);
        fflush(stdout);
        usleep(10000);
    }
}
