/* The caller of ipara_lto_tick.c's `tick`: under -flto, -fipa-ra lets it keep its loop state in
 * call-clobbered registers across the call. */
#include <stdio.h>
#include <unistd.h>

int tick(int x);

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
