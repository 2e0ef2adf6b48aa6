/* A vendor's plain object: replaces the global `value` by name, no manifest. */
#include <string.h>

extern int counter;
int helper(int);

int value(void) {
    const char *volatile p = "abc";
    counter = helper(counter) + (int)strlen(p) - 3;
    return 2000000 + counter;
}
