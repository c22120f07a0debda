/* Stop signals: SIGTERM and SIGUSR1 (what Slurm sends before the time
 * limit or on preemption) only set a flag; the distribution loop sees it
 * at the next round boundary, all ranks agree to stop, write a checkpoint
 * and exit with SF_EXIT_INTERRUPTED. The handler also arms an alarm: if
 * the orderly stop takes longer than the grace time (a rank stuck in a
 * long morsel, say), SIGALRM ends the process with the same code and the
 * previous checkpoint stands. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "shardflow/fault.h"

static volatile sig_atomic_t got_signal;
static unsigned grace_s = 60;

static void on_stop(int sig)
{
    if (got_signal == 0) {
        got_signal = sig;
        alarm(grace_s);
    }
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "shardflow: grace time after the stop signal ran out; exiting\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(SF_EXIT_INTERRUPTED);
}

void sf_signal_install(double grace_seconds)
{
    grace_s = grace_seconds >= 1.0 ? (unsigned)(grace_seconds + 0.5) : 1u;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
}

int sf_signal_pending(void) { return (int)got_signal; }


static sigset_t stop_set(void)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGTERM);
    sigaddset(&s, SIGUSR1);
    sigaddset(&s, SIGALRM);
    return s;
}

void sf_signal_block(void)
{
    sigset_t s = stop_set();
    pthread_sigmask(SIG_BLOCK, &s, NULL);
}

void sf_signal_unblock(void)
{
    sigset_t s = stop_set();
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);
}

void sf_signal_disarm(void) { alarm(0); }
