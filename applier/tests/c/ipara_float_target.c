/* The caller keeps a double accumulator and a constant in vector registers (xmm0, xmm2) across
 * its calls of the integer leaf `tick` (-fipa-ra: tick touches no vector register). */
#include <stdio.h>
#include <unistd.h>

__attribute__((noinline)) int tick(int x) { return (x ^ 0x5a) & 0xff; }

__attribute__((noinline)) long advance(long counter) {
    double acc = 0.5;
    for (int i = 0; i < 8; i++)
        acc = acc * 1.5 + tick(i);
    return counter + (acc > 4467.0 && acc < 4468.0 ? 1 : 1000000);
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
