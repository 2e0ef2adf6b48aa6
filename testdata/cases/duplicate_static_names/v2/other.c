static int helper(void)
{
    return 200;
}

int other(void)
{
    return helper();
}
