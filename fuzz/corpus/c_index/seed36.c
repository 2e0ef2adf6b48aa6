/* Replaces `tiny`, which is too short for a jump. */
int tiny(void) { return 42; }
