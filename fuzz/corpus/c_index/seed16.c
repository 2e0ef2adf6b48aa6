static int count;
static int sign = -1;

/* Written by configuration code, so the compiler must keep sign in memory. */
void set_sign(int s)
{
    sign = s;
}

int state(void)
{
    return count;
}

int value(void)
{
    count += 1;
    return sign * 2;
}
