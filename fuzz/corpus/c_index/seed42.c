/* A sender thread sends SIGUSR1 to the process about every millisecond and waits (up to 2 s) for
 * the handler to count it before sending the next, so signals never coalesce: a lost signal shows
 * as received < sent. A busy worker and the main thread (blocked in read, SA_RESTART) receive
 * them. A line on stdin stops the sender; the program then prints the final counts. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile long received;
static volatile long sent;
static volatile long lost;
static volatile int stop;

static void on_usr1(int sig) {
    (void)sig;
    __atomic_fetch_add(&received, 1, __ATOMIC_SEQ_CST);
}

static void *sender(void *arg) {
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    while (!__atomic_load_n(&stop, __ATOMIC_SEQ_CST)) {
        __atomic_fetch_add(&sent, 1, __ATOMIC_SEQ_CST);
        kill(getpid(), SIGUSR1);
        int waited = 0;
        while (__atomic_load_n(&received, __ATOMIC_SEQ_CST) + lost < sent) {
            struct timespec w = {0, 50 * 1000};
            nanosleep(&w, NULL);
            if (++waited > 40000) { /* ~2 s: give up on this one */
                lost++;
                break;
            }
        }
        struct timespec req = {0, 1000 * 1000};
        nanosleep(&req, NULL);
    }
    return NULL;
}

static void *worker(void *arg) {
    (void)arg;
    static volatile unsigned long spin;
    for (;;)
        spin++;
    return NULL;
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    pthread_t s, w;
    pthread_create(&w, NULL, worker, NULL);
    pthread_create(&s, NULL, sender, NULL);
    printf("READY\n");
    fflush(stdout);
    char buf[64];
    ssize_t n;
    do
        n = read(0, buf, sizeof buf);
    while (n < 0);
    __atomic_store_n(&stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(s, NULL);
    usleep(100 * 1000);
    printf("FINAL sent=%ld received=%ld lost=%ld\n", sent, received, lost);
    fflush(stdout);
    for (;;)
        pause();
}
