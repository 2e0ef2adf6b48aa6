static int calls;

/* Three bytes at -O2 (xor eax,eax; ret): shorter than the 5-byte jump. Alignment padding
 * follows it, since state() comes next. */
int value(void)
{
    return 0;
}

int state(void)
{
    return ++calls;
}
