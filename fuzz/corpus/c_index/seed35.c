/* Replaces spin(), whose first bytes a thread never leaves. */
void spin(void) {
    for (;;) {
        __asm__ volatile("pause");
    }
}
