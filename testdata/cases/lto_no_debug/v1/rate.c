/* A small global function that link-time optimisation inlines into its caller in lib.c. */
int rate(int x)
{
    return x * 3;
}
