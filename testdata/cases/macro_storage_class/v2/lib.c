/* The storage class of the helper comes from a macro, as in real interpreters: tree-sitter
 * sees no `static` in the source; the compiler sees `static inline`. At -O2 the helper is
 * inlined everywhere and has no symbol, so the patch must carry its own copy. */
#define l_sinline static inline

static int calls;

l_sinline int twice(int v)
{
    return 2 * v;
}

int state(void)
{
    return calls;
}

int value(void)
{
    calls++;
    return twice(5) + 1;
}
