/* `value` calling `sleep`: it must reach the interposer the process's own code reaches. */
unsigned int sleep(unsigned int seconds);

int value(void) { return 100 + (int)sleep(0); }

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
