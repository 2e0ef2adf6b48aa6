/* Built with -Werror and -Wredundant-decls, as strict projects are: the patch unit's own
 * redeclarations must not stop the patch. */
int state(void);
int value(void);

static int calls;

int state(void)
{
    return calls;
}

int value(void)
{
    calls++;
    return 2;
}
