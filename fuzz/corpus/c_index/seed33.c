/* New lib.c `value`: continues the static `calls` of lib.c (bound by the manifest), calls an
 * unpatched function of the target (helper) and libc (snprintf, printf, strlen). */
#include <stdio.h>
#include <string.h>

extern int calls __asm__("hp_calls");
extern int counter;
int helper(int);

static char note[32];

int value(void) {
    calls = helper(calls);
    counter++;
    snprintf(note, sizeof note, "calls=%d", calls);
    const char *volatile p = note;
    if (calls % 10 == 0) {
        printf("patched %s len %zu\n", note, strlen(p));
    }
    return 1000000 + calls;
}

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
