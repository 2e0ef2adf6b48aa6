/* A new `step` for the coroutine target: it suspends in the middle too, now inside the patch. */
#include <stdio.h>
#include <ucontext.h>

extern ucontext_t main_ctx, co_ctx;

void step(void) {
    printf("step v2 begins\n");
    fflush(stdout);
    swapcontext(&co_ctx, &main_ctx);
    printf("step v2 resumes\n");
    fflush(stdout);
}

#ifdef HP_MANIFEST
#include HP_MANIFEST
#endif
