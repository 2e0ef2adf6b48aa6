/* Dependency (DT_NEEDED) of the second dlopened plugin of the binding tests. */
int shared_dep(void) { return 2; }
/* Called by no one before the patch: no GOT slot decides, the second plugin's scope does. */
int shared_dep2(void) { return 200; }
