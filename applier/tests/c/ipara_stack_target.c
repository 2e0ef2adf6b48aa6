/* A callee with a seventh argument on the stack, whose caller keeps its state in r10 and r11
 * across the call (-fipa-ra): a thunk's frame would shift that argument. */
#include <stdio.h>
#include <unistd.h>

__attribute__((noinline)) long tick7(long a, long b, long c, long d, long e, long f, long g) {
    return (a ^ b ^ c ^ d ^ e ^ f ^ g ^ 0x5a) & 0xff;
}

__attribute__((noinline)) long advance(long counter) {
    long acc = 0;
    for (long i = 0; i < 8; i++)
        acc += tick7(i, i + 1, i + 2, i + 3, i + 4, i + 5, i + 6);
    return counter + (acc == 708 ? 1 : 1000000);
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
