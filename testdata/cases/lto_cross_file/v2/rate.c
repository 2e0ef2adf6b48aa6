/* A small global function that link-time optimisation inlines into its caller in lib.c. */
int rate(int x)
{
    return x * 4;
}

/* Calls `rate` in the same file but is used nowhere: the link drops it, so the binary's DWARF
 * has no code of it and it is not patched (the same-file source superset would take it). */
int rate_of_pair(int a, int b)
{
    return rate(a) + rate(b);
}
