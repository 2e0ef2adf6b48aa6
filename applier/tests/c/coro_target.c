/* Target of the suspended-context tests: a makecontext/swapcontext coroutine whose function
 * `step` suspends itself in the middle (inside `step`, on a stack of its own, saved in a
 * ucontext_t in .bss: on no thread's stack). Each SIGUSR1 moves it on:
 *   idle -> suspended (`step` prints `<name> begins` and suspends; main prints `suspended`)
 *   suspended -> idle (`step` prints `<name> resumes`; the coroutine prints `coroutine done`,
 *   its context is cleared and its stack unmapped, as a coroutine library recycles them)
 * With argument `onstack`, the coroutine's stack is an array in main's frame and, while it is
 * suspended, its context is only a copy in a local of main: both on the main thread's own stack.
 * The main thread prints `tick N value V` every 20 ms. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#define STACK_SIZE (64 * 1024)

ucontext_t main_ctx, co_ctx;
static volatile sig_atomic_t pokes;
static int finished;

__attribute__((noinline)) int value(void) {
    __asm__ volatile("");
    return 1;
}

__attribute__((noinline)) void step(void) {
    printf("step begins\n");
    fflush(stdout);
    swapcontext(&co_ctx, &main_ctx);
    printf("step resumes\n");
    fflush(stdout);
}

static void coroutine(void) {
    step();
    printf("coroutine done\n");
    fflush(stdout);
    finished = 1;
}

static void on_usr1(int sig) {
    (void)sig;
    pokes++;
}

int main(int argc, char **argv) {
    int onstack = argc > 1 && strcmp(argv[1], "onstack") == 0;
    char local_stack[STACK_SIZE] __attribute__((aligned(16)));
    ucontext_t saved;
    signal(SIGUSR1, on_usr1);
    printf("ready\n");
    fflush(stdout);
    int seen = 0;
    void *stack = 0;
    for (unsigned long i = 0;; i++) {
        if (pokes != seen) {
            seen++;
            if (!stack) {
                stack = onstack ? (void *)local_stack
                                : mmap(0, STACK_SIZE, PROT_READ | PROT_WRITE,
                                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                getcontext(&co_ctx);
                co_ctx.uc_stack.ss_sp = stack;
                co_ctx.uc_stack.ss_size = STACK_SIZE;
                co_ctx.uc_link = &main_ctx;
                makecontext(&co_ctx, coroutine, 0);
                finished = 0;
                swapcontext(&main_ctx, &co_ctx);
                if (onstack) {
                    saved = co_ctx;
                    memset(&co_ctx, 0, sizeof co_ctx);
                }
                printf("suspended\n");
                fflush(stdout);
            } else {
                if (onstack) {
                    co_ctx = saved;
                }
                swapcontext(&main_ctx, &co_ctx);
                if (finished) {
                    memset(&co_ctx, 0, sizeof co_ctx);
                    memset(&saved, 0, sizeof saved);
                    if (!onstack) {
                        munmap(stack, STACK_SIZE);
                    }
                    stack = 0;
                }
            }
        }
        printf("tick %lu value %d\n", i, value());
        fflush(stdout);
        usleep(20000);
    }
}
