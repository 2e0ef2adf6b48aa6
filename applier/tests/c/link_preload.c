/* LD_PRELOAD interposer of the binding tests: a `sleep` that returns 42 at once. */
unsigned int sleep(unsigned int seconds) {
    (void)seconds;
    return 42;
}

/* Also defined by libl.so, called by nobody: the link map's order alone decides. */
int who(void) { return 1; }
