static int calls;
static int sign = -1;
void set_sign(int s) { sign = s; }
static __attribute__((noinline)) int scale(int x) { return x * sign * 2; }
int state(void) { return calls; }
__attribute__((noinline)) int value(void)
{
    static int seen;
    calls++;
    seen++;
    return scale(10) + seen - calls;
}
