int version;

static int bump(int by)
{
    static int total;
    total += by;
    return total;
}

int value(void)
{
    static int calls;
    version = 1;
    bump(2);
    return ++calls;
}
