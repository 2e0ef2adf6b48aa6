/* Replaces `value` using only the target's own symbols (no libc). */
extern int counter;
int helper(int);

int value(void) {
    counter = helper(counter);
    return 2000000 + counter;
}
