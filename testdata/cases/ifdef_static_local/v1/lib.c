/* Two alternative declarations of one static local; the build compiles only one of them.
 * Unchanged, it must stay bound to the running storage (`seen` counts with `calls`: a reset
 * would show in the value). */
#define HAVE_SEEN 1

static int calls;

int state(void)
{
    return calls;
}

int value(void)
{
#ifdef HAVE_SEEN
    static int seen;
#else
    static int seen = 100;
#endif
    calls++;
    seen++;
    return seen - calls + 10;
}
