/* Target of the fault tests (faults_live.rs): live patching must leave blocked syscalls, signals
 * and the red zone of the thread used for injected syscalls exactly as they were.
 *   reader    blocks in read(0); echoes each line as `echo LINE`; `report` prints the signal
 *             counts; any read error (EINTR included) prints `read error` and exits
 *   sleeper   nanosleep 50 ms in a loop; a call that fails or lasts less prints `short sleep`
 *   poller    epoll_wait with a 50 ms timeout in a loop; same, `short wait`
 *   sender    pthread_kill(receiver, SIGUSR1) every 0.1-1 ms, one at a time (the next only
 *             once the previous was received, so the kernel never merges two)
 *   receiver  counts SIGUSR1 in its handler; the sender also sends SIGUSR2 to the main thread,
 *             which counts them the same way
 *   main      (the thread remote syscalls go through) spins in rz_spin, a leaf that keeps 16
 *             values in its red zone and checks them; prints `tick N value V` every ~20 ms and
 *             `red zone corrupted` (then exits) when a value changed. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

/* rz_spin(seed, rounds): writes 16 values below %rsp (the red zone; %rsp is never moved), then
 * checks them `rounds` times. Returns 0, or 1 when one changed. */
__asm__(".text\n"
        ".globl rz_spin\n"
        ".type rz_spin,@function\n"
        "rz_spin:\n"
        ".cfi_startproc\n"
        "  mov %rdi, %rax\n"
        "  xor %ecx, %ecx\n"
        "1:\n"
        "  mov %rax, -128(%rsp,%rcx,8)\n"
        "  add %rdi, %rax\n"
        "  inc %ecx\n"
        "  cmp $16, %ecx\n"
        "  jne 1b\n"
        "2:\n"
        "  mov %rdi, %rax\n"
        "  xor %ecx, %ecx\n"
        "3:\n"
        "  cmp -128(%rsp,%rcx,8), %rax\n"
        "  jne 4f\n"
        "  add %rdi, %rax\n"
        "  inc %ecx\n"
        "  cmp $16, %ecx\n"
        "  jne 3b\n"
        "  dec %rsi\n"
        "  jnz 2b\n"
        "  xor %eax, %eax\n"
        "  ret\n"
        "4:\n"
        "  mov $1, %eax\n"
        "  ret\n"
        ".cfi_endproc\n"
        ".size rz_spin, .-rz_spin\n");
int rz_spin(long seed, long rounds);

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#include <stdarg.h>
static void say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&out_lock);
    vprintf(fmt, ap);
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
    va_end(ap);
}

__attribute__((noinline)) int value(void) {
    __asm__ volatile("");
    return 1;
}

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static atomic_long sent, received, sent_main, received_main;
static atomic_int stop_sending, sender_idle;
static pthread_t receiver_thread, main_thread;

static void on_usr1(int sig) {
    (void)sig;
    atomic_fetch_add(&received, 1);
}

static void on_usr2(int sig) {
    (void)sig;
    atomic_fetch_add(&received_main, 1);
}

static void *receiver(void *arg) {
    (void)arg;
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
    for (;;)
        pause();
    return NULL;
}

static void *sender(void *arg) {
    (void)arg;
    struct timespec ms = {0, 1000000}, gap = {0, 100000};
    long waiting_since = 0;
    for (;;) {
        if (atomic_load(&stop_sending)) {
            atomic_store(&sender_idle, 1);
            nanosleep(&ms, NULL);
            continue;
        }
        int idle = atomic_load(&received) == atomic_load(&sent) &&
                   atomic_load(&received_main) == atomic_load(&sent_main);
        if (idle) {
            atomic_fetch_add(&sent, 1);
            pthread_kill(receiver_thread, SIGUSR1);
            atomic_fetch_add(&sent_main, 1);
            pthread_kill(main_thread, SIGUSR2);
            waiting_since = now_ns();
            nanosleep(&gap, NULL);
            continue;
        } else if (now_ns() - waiting_since > 2000000000L) {
            say("signal lost: sent %ld received %ld, to main sent %ld received %ld\n",
                atomic_load(&sent), atomic_load(&received), atomic_load(&sent_main),
                atomic_load(&received_main));
            exit(1);
        }
        nanosleep(&ms, NULL);
    }
    return NULL;
}

static void *sleeper(void *arg) {
    (void)arg;
    for (long n = 0;; n++) {
        struct timespec want = {0, 50000000};
        long t0 = now_ns();
        int rc = nanosleep(&want, NULL);
        long took = now_ns() - t0;
        if (rc != 0 || took < 50000000L) {
            say("short sleep: rc %d errno %d took %ld ns\n", rc, rc ? errno : 0, took);
            exit(1);
        }
        if (n % 4 == 0)
            say("slept %ld\n", n);
    }
    return NULL;
}

static void *poller(void *arg) {
    (void)arg;
    int ep = epoll_create1(0);
    if (ep < 0) {
        say("epoll_create1 failed\n");
        exit(1);
    }
    struct epoll_event ev;
    for (long n = 0;; n++) {
        long t0 = now_ns();
        int rc = epoll_wait(ep, &ev, 1, 50);
        long took = now_ns() - t0;
        /* epoll's timeout is in milliseconds; allow the kernel 1 ms of rounding. */
        if (rc != 0 || took < 49000000L) {
            say("short wait: rc %d errno %d took %ld ns\n", rc, rc ? errno : 0, took);
            exit(1);
        }
        if (n % 4 == 0)
            say("polled %ld\n", n);
    }
    return NULL;
}

static void *reader(void *arg) {
    (void)arg;
    char buf[4096], line[4096];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n < 0) {
            say("read error: errno %d (%s)\n", errno, strerror(errno));
            exit(1);
        }
        if (n == 0) {
            say("read eof\n");
            exit(1);
        }
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != '\n') {
                if (len < sizeof line - 1)
                    line[len++] = buf[i];
                continue;
            }
            line[len] = 0;
            len = 0;
            if (strcmp(line, "report") == 0) {
                atomic_store(&stop_sending, 1);
                while (!atomic_load(&sender_idle))
                    usleep(1000);
                for (int w = 0; w < 2000 && (atomic_load(&received) != atomic_load(&sent) ||
                                             atomic_load(&received_main) != atomic_load(&sent_main));
                     w++)
                    usleep(1000);
                say("signals sent %ld received %ld, to main sent %ld received %ld\n",
                    atomic_load(&sent), atomic_load(&received), atomic_load(&sent_main),
                    atomic_load(&received_main));
            } else {
                say("echo %s\n", line);
            }
        }
    }
    return NULL;
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_usr2;
    sigaction(SIGUSR2, &sa, NULL);
    main_thread = pthread_self();
    /* Only the receiver takes SIGUSR1; SIGUSR2 goes to the main thread, the one remote syscalls
     * are injected through (its handler runs below the red zone, which the kernel skips). */
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, NULL);

    pthread_t t;
    pthread_create(&receiver_thread, NULL, receiver, NULL);
    pthread_create(&t, NULL, sender, NULL);
    pthread_create(&t, NULL, sleeper, NULL);
    pthread_create(&t, NULL, poller, NULL);
    pthread_create(&t, NULL, reader, NULL);

    long next = now_ns();
    for (long tick = 0, seed = 0x9e3779b97f4a7c15L;; seed += 0x1234567) {
        if (rz_spin(seed, 20000)) {
            say("red zone corrupted\n");
            exit(1);
        }
        if (now_ns() >= next) {
            say("tick %ld value %d\n", tick++, value());
            next = now_ns() + 20000000L;
        }
    }
}
