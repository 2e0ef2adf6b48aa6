/* `lib_short` of libl.so (13 bytes, no padding after it); RESULT picks what it returns. */
#ifndef RESULT
#define RESULT (x * 7 + 4)
#endif

int lib_short(int x) { return RESULT; }

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
