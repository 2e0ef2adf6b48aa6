/* `tick` in a file of its own: only link-time optimisation lets its callers see its body. */
__attribute__((noinline)) int tick(int x) { return (x ^ 0x5a) & 0xff; }
