/* `wrap` tail-calls `tick` (jmp): the caller of wrap keeps its loop state in call-clobbered
 * registers across its call of wrap, relying on tick (through wrap) to leave them alone. */
#include <stdio.h>
#include <unistd.h>

__attribute__((noinline)) int tick(int x) { return (x ^ 0x5a) & 0xff; }

__attribute__((noinline)) int wrap(int x) { return tick(x - 1); }

__attribute__((noinline)) long advance(long counter) {
    long acc = 0;
    for (int i = 0; i < 8; i++)
        acc += wrap(i + 1);
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
