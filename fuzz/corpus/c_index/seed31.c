/* `scale` is static in both files of the target: a plain object cannot say which one. */
int scale(int x) { return x * 7; }
