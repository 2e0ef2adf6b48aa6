/* main keeps its inner loop's state in call-clobbered registers across its calls of the
 * same-file leaf `tick` (gcc -O2 -fipa-ra: it saw that tick leaves them alone). */
#include <stdio.h>
#include <unistd.h>

int version = 1;

__attribute__((noinline)) int tick(int x)
{
    version = 2;
    /* Stands for a bigger body: it needs rdx and rsi, which the running main keeps its loop
     * counter and sum in across this call. */
    __asm__ volatile("mov $8, %%edx\n\tmov $777, %%esi" ::: "rdx", "rsi");
    return (x ^ 0x5a) & 0xff;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (unsigned round = 0;; round++) {
        long sum = 0;
        for (int i = 0; i < 8; i++)
            sum += tick(i);
        printf("round=%u sum=%ld version=%d\n", round, sum, version);
        usleep(20000);
    }
}
