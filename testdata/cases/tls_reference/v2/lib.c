__thread int tls_calls;
static __thread int tls_bonus = 5;

int state(void)
{
    return tls_calls;
}

int value(void)
{
    tls_calls++;
    return 43 + tls_bonus - 5;
}
