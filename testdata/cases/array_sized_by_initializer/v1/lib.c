/* An array whose length only its initializer gives: the patch's extern declaration must keep
 * that length, or `sizeof(proto)` does not compile. */
static char proto[] = "HTTP/1.0";

static int calls;

int state(void)
{
    return calls;
}

int value(void)
{
    calls++;
    proto[0] = (char)(71 + (calls > 0));
    return proto[calls % 4 == 9] + (int)sizeof(proto);
}
