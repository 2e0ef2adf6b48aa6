/* `value` of the kill-tool target, v2: a plain object (`gcc -c -fPIC`), no manifest. */
int value(void) {
    __asm__ volatile("");
    return 2;
}
