/* `lib_prot_user` of libl.so: its protected `prot_fn` and hidden `hid_fn`, not the executable's. */
int prot_fn(void);
int hid_fn(void);

int lib_prot_user(void) { return prot_fn() * 100 + hid_fn(); }

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
