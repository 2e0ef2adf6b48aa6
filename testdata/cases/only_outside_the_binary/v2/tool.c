/* A utility with its own main, built separately: it is not part of the running service. */
#include "tool.h"

int main(void)
{
    struct opts o = {0};
    return o.verbose + o.quiet;
}
