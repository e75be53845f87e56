/* target_signals: the process-wide half of target (public calls declared in target.h): the
 * registry of launched process groups that keeps a dying probe from leaving servers behind (an
 * atexit hook stops them; a second Ctrl-C SIGKILLs them from the handler), the SIGINT/SIGTERM
 * handler with its self-pipe, and the child-subreaper setup. It does not launch, wait for or
 * talk to a server (target.c does); target.c alone calls the registry (target_signals.h). */
#include "server/target_signals.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "server/target.h"
#include "util/clock.h"
#include "util/log.h"

#define TARGET_MAX_GROUPS 64

static volatile sig_atomic_t g_groups[TARGET_MAX_GROUPS]; /* pgids; 0 = free slot */
static pthread_mutex_t g_reg_mu = PTHREAD_MUTEX_INITIALIZER;
static volatile sig_atomic_t g_interrupted;
static int g_sig_pipe[2] = {-1, -1};
static int g_handlers_installed;

int target_registry_add(pid_t pgid)
{
    int rc = -1;
    pthread_mutex_lock(&g_reg_mu);
    for (int i = 0; i < TARGET_MAX_GROUPS; i++)
        if (g_groups[i] == 0) {
            g_groups[i] = (sig_atomic_t)pgid;
            rc = 0;
            break;
        }
    pthread_mutex_unlock(&g_reg_mu);
    return rc;
}

void target_registry_remove(pid_t pgid)
{
    pthread_mutex_lock(&g_reg_mu);
    for (int i = 0; i < TARGET_MAX_GROUPS; i++)
        if (g_groups[i] == (sig_atomic_t)pgid)
            g_groups[i] = 0;
    pthread_mutex_unlock(&g_reg_mu);
}

void target_kill_all(void)
{
    for (int i = 0; i < TARGET_MAX_GROUPS; i++) {
        pid_t pg = (pid_t)g_groups[i];
        if (pg > 1)
            kill(-pg, SIGKILL);
    }
}

static void on_signal(int sig)
{
    int saved = errno;
    if (g_interrupted) {
        static const char msg[] = "\nslmprobe: second interrupt: killing the server, exiting\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        target_kill_all();
        _exit(130);
    }
    g_interrupted = sig;
    if (g_sig_pipe[1] >= 0) {
        ssize_t w = write(g_sig_pipe[1], "!", 1);
        (void)w;
    }
    errno = saved;
}

static void at_exit_stop_all(void)
{
    /* Graceful first (1 s), then SIGKILL; reap what is ours. */
    int any = 0;
    for (int i = 0; i < TARGET_MAX_GROUPS; i++) {
        pid_t pg = (pid_t)g_groups[i];
        if (pg > 1 && kill(-pg, SIGTERM) == 0)
            any = 1;
    }
    for (int t = 0; any && t < 100; t++) {
        any = 0;
        for (int i = 0; i < TARGET_MAX_GROUPS; i++) {
            pid_t pg = (pid_t)g_groups[i];
            if (pg <= 1)
                continue;
            while (waitpid(-pg, NULL, WNOHANG) > 0)
                ;
            if (kill(-pg, 0) == 0)
                any = 1;
        }
        if (any)
            clock_sleep_ns(10 * 1000 * 1000);
    }
    target_kill_all();
    for (int i = 0; i < TARGET_MAX_GROUPS; i++) {
        pid_t pg = (pid_t)g_groups[i];
        if (pg > 1)
            while (waitpid(-pg, NULL, WNOHANG) > 0)
                ;
        g_groups[i] = 0;
    }
}

static pthread_once_t g_atexit_once = PTHREAD_ONCE_INIT;
static void install_atexit(void)
{
    atexit(at_exit_stop_all);
}

void target_process_setup(void)
{
    pthread_once(&g_atexit_once, install_atexit);
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
}

void target_install_signal_handlers(void)
{
    target_process_setup();
    if (g_handlers_installed)
        return;
    if (pipe2(g_sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        g_sig_pipe[0] = g_sig_pipe[1] = -1;
        log_warn("target", "self-pipe: %s", strerror(errno));
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    g_handlers_installed = 1;
}

int target_interrupted(void)
{
    return g_interrupted != 0;
}

int target_signal_fd(void)
{
    return g_sig_pipe[0];
}
