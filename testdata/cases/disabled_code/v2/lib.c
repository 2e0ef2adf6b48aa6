/* A block the build never compiles changes too, a struct layout included: no refusal, no
 * patch for it; only `value`, which the build compiles, is patched. */
static int calls;

#if 0
struct unused {
    int b;
    int a;
};

int dead(struct unused *u)
{
    return u->a + 1;
}
#endif

int state(void)
{
    return calls;
}

int value(void)
{
    calls++;
    return 2;
}
