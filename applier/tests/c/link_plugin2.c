/* Second library the binding tests' target dlopens (after link_plugin.c), linked against
 * libdep.so: its `shared_dep` comes from its own local scope, not from the first plugin. */
int shared_dep(void);

int plugin2_value(void) { return shared_dep() + 10; }
