/* The new outer() and inner() of the threadwise target: 22, where the old chain gives 11. */
#include HP_MANIFEST

__attribute__((noinline)) int inner(void) { return 2; }
__attribute__((noinline)) int outer(void) {
    int v = inner();
    return v * 10 + 2;
}
