/* Library of the binding tests (libl.so, built with -falign-functions=1: no padding after a
 * function): a variable the executable copies, two versions of `vget`, a short (13-byte) and a
 * long function, one that reads the copied variable, and IFUNCs nobody called. */
int lib_counter = 5;

int vget_v1(void) { return 1; }
int vget_v2(void) { return 2; }
__asm__(".symver vget_v1, vget@VER_1");
__asm__(".symver vget_v2, vget@@VER_2");

__attribute__((noinline)) int lib_short(int x) { return x * 7 + 3; }

/* Long enough for a 14-byte jump (the stacking test's function). */
__attribute__((noinline)) int lib_long(int x) { return x * x * 5 + x * 3 + 11; }

/* Long enough for a 14-byte jump (17 bytes): the copy-relocation test is about binding only. */
static int lib_get_calls;
__attribute__((noinline)) int lib_get(void) {
    lib_get_calls++;
    return lib_counter;
}

static int pick_a(void) { return 11; }
static int pick_b(void) { return 22; }
static void *resolve_pick(void) { return pick_b; }
int pick(void) __attribute__((ifunc("resolve_pick")));

/* Keeps pick_a: a resolver could choose it. */
void *lib_pick_a(void) { return pick_a; }

/* Also defined by the preload library (which comes first in the lookup scope). */
int who(void) { return 2; }

/* An IFUNC whose resolver answers with data, not code: refused, not called. */
static void *resolve_bad(void) { return &lib_counter; }
int bad_pick(void) __attribute__((ifunc("resolve_bad")));

/* A thread-local variable of the library (static TLS: the library is loaded at start). */
__thread int lib_tls = 7;
__attribute__((noinline)) int lib_tls_next(void) { return ++lib_tls; }

/* A protected and a hidden function: the library's own calls reach them, never the executable's
 * functions of the same names. */
__attribute__((noinline, visibility("protected"))) int prot_fn(void) { return 5; }
__attribute__((noinline, used, visibility("hidden"))) int hid_fn(void) { return 3; }
__attribute__((noinline)) int lib_prot_user(void) { return prot_fn() * 10 + hid_fn(); }
