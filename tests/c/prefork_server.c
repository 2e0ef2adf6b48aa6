/* A pre-forking TCP server on 127.0.0.1 whose workers are fresh processes: the master keeps
 * WORKERS of them, each started by fork + exec of this same binary ("worker FD"). A worker
 * initialises for INIT_MS (as a real one loads its configuration), then answers exactly one
 * connection with "reply value=N pid=P" (value() is in lib.c) and exits; the master starts a new
 * one in its place. So every request after the first few is answered by a process that did not
 * exist when the service was patched. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define WORKERS 2
#define INIT_MS 300

int value(void);
int state(void);

static void spawn(const char *self, int listener)
{
    pid_t pid = fork();
    if (pid == 0) {
        char fd[16];
        snprintf(fd, sizeof fd, "%d", listener);
        execl("/proc/self/exe", self, "worker", fd, (char *)NULL);
        _exit(127);
    }
}

static int worker(int listener)
{
    /* Dies with the master, so that a test that kills the master leaves no worker behind. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        return 1;
    usleep(INIT_MS * 1000);
    int client = accept(listener, NULL, NULL);
    if (client < 0)
        return 1;
    char line[64];
    int n = snprintf(line, sizeof line, "reply value=%d pid=%d\n", value(), (int)getpid());
    if (write(client, line, (size_t)n) != n)
        return 1;
    close(client);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && strcmp(argv[1], "worker") == 0)
        return worker(atoi(argv[2]));
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(listener, 16) != 0 || getsockname(listener, (struct sockaddr *)&addr, &len) != 0) {
        perror("listen");
        return 1;
    }
    printf("port=%d\n", ntohs(addr.sin_port));
    for (int i = 0; i < WORKERS; i++)
        spawn(argv[0], listener);
    for (;;) {
        int status;
        if (wait(&status) > 0)
            spawn(argv[0], listener);
        printf("state=%d\n", state());
    }
}
