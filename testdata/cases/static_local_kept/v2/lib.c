int version;

int value(void)
{
    static int calls;
    version = 2;
    return ++calls;
}
