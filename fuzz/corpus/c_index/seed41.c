/* Blocks in read(2) on stdin and echoes each chunk; a read that fails (EINTR: the syscall restart
 * was broken) is reported and ends the program. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    char buf[256];
    printf("READY\n");
    fflush(stdout);
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf - 1);
        if (n < 0) {
            printf("ERROR read: %s\n", strerror(errno));
            fflush(stdout);
            return 1;
        }
        if (n == 0)
            return 0;
        buf[n] = 0;
        buf[strcspn(buf, "\n")] = 0;
        printf("GOT %s\n", buf);
        fflush(stdout);
    }
}
