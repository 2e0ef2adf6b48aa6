static int helper(void)
{
    return 100;
}

int other(void)
{
    return helper();
}
