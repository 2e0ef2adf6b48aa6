/* A pre-forking server in the shape of tests/family_cli.rs: the master forks WORKERS workers
 * (plain fork, no exec: they run the master's code), the first worker forks a grandchild, and
 * the master forks a helper that execs `sleep` (another executable, so not of the family). Every
 * process of the family then prints `ROLE pid=P value=V state=S` every 20 ms, where V is what
 * value() returns (lib.c: 1 at v1, 2 at v2) and S counts its calls in that process. SIGUSR1 makes
 * a process hold inside value() (in hold_here, called from it) until SIGUSR2; it prints
 * `held pid=P` first. Started with the argument `spawn-on-release`, a process released by SIGUSR2
 * forks a new worker before it returns from value() and prints `late=P`; the worker, forked with
 * a frame of value() on its stack, serves like its parent. Every child dies with its parent
 * (PR_SET_PDEATHSIG), so a test that kills the master leaves no process behind; a child that
 * exits is reaped at once (SIGCHLD ignored), as a real master reaps its workers. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define WORKERS 2

int value(void);
int state(void);

static volatile sig_atomic_t held;
static int spawn_on_release;

static pid_t fork_child(void);

static void on_signal(int signal)
{
    held = signal == SIGUSR1;
}

/* Called by value(): while held, a frame of value() stays on this process's stack. */
void hold_here(void)
{
    if (!held)
        return;
    printf("held pid=%d\n", (int)getpid());
    while (held)
        pause();
    if (spawn_on_release) {
        spawn_on_release = 0;
        pid_t late = fork_child();
        if (late > 0)
            printf("late=%d\n", (int)late);
    }
}

/* Forks a child that dies with this process; returns 0 in the child. */
static pid_t fork_child(void)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
    }
    return pid;
}

static void serve(const char *role)
{
    for (;;) {
        int v = value();
        printf("%s pid=%d value=%d state=%d\n", role, (int)getpid(), v, state());
        usleep(20000);
    }
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    spawn_on_release = argc > 1 && strcmp(argv[1], "spawn-on-release") == 0;
    struct sigaction action = {.sa_handler = on_signal};
    sigemptyset(&action.sa_mask);
    sigaction(SIGUSR1, &action, NULL);
    sigaction(SIGUSR2, &action, NULL);
    signal(SIGCHLD, SIG_IGN);
    pid_t helper = fork_child();
    if (helper == 0) {
        execl("/bin/sleep", "sleep", "1000", (char *)NULL);
        _exit(127);
    }
    printf("helper=%d\n", (int)helper);
    for (int i = 0; i < WORKERS; i++) {
        if (fork_child() == 0) {
            if (i == 0 && fork_child() == 0)
                serve("grandchild");
            serve("worker");
        }
    }
    serve("master");
}
