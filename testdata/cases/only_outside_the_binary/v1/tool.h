/* Only tool.c, a separate utility that is not linked into the service, uses this. */
struct opts {
    int verbose;
};
