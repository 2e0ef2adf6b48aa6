/* Creates and joins short-lived threads continuously; prints the number of rounds every 20 ms. */
#include <pthread.h>
#include <stdio.h>
#include <time.h>

static volatile unsigned long sink;

static void *short_lived(void *arg) {
    for (int i = 0; i < 1000; i++)
        sink += (unsigned long)arg + i;
    return NULL;
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

int main(void) {
    unsigned long rounds = 0;
    long long last = now_ms();
    printf("READY\n");
    fflush(stdout);
    for (;;) {
        pthread_t t[4];
        int made = 0;
        for (int i = 0; i < 4; i++)
            if (pthread_create(&t[i], NULL, short_lived, (void *)(long)i) == 0)
                made++;
            else
                break;
        for (int i = 0; i < made; i++)
            pthread_join(t[i], NULL);
        rounds++;
        if (now_ms() - last >= 20) {
            last = now_ms();
            printf("ROUNDS %lu\n", rounds);
            fflush(stdout);
        }
    }
}
