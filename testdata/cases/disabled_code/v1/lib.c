/* A block the build never compiles changes too, a struct layout included: no refusal, no
 * patch for it; only `value`, which the build compiles, is patched. */
static int calls;

#if 0
struct unused {
    int a;
};

int dead(struct unused *u)
{
    return u->a;
}
#endif

int state(void)
{
    return calls;
}

int value(void)
{
    calls++;
    return 1;
}
