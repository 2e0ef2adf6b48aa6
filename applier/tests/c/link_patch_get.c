/* `lib_get` of libl.so reading `lib_counter`: the executable's copy, unless the library binds
 * its own references itself (-Bsymbolic). */
extern int lib_counter;

int lib_get(void) { return lib_counter * 1000; }

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
