int version;

int value(void)
{
    static int calls;
    version = 1;
    return ++calls;
}
