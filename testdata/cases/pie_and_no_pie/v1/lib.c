#include <string.h>

int version;
static int scale = 1;
static const char *names[] = { "one", "two" };

int value(void)
{
    static int calls;
    version = scale * (int)strlen(names[0]) / 3;
    return ++calls;
}
