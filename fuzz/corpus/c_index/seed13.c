int offset(void);

static int count;

int state(void)
{
    return count;
}

int value(void)
{
    count++;
    return 40 + offset();
}
