/* The library of the whitespace case: same tokens, new layout and comments. */
static int calls; // how many times value() ran

int state(void) { return calls; }

int
value (void)
{
    /* count the call */
    calls ++ ;
    return   9 ;   // unchanged
}
