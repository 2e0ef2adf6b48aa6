#define X(a) a##_fn
int X(foo)(void) { return 1; }
#if
static int (
