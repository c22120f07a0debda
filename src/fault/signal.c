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
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
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

/* ---- mapped inputs ----------------------------------------------------------
 * A read of a mapped file past its current end (the file was cut while the
 * run reads it) raises SIGBUS. The handler turns one inside a registered
 * mapping into a message naming the file and exit status 1; any other
 * SIGBUS goes to the handler that was there before (or the default). */
#define MAX_MAPS 1024

static struct mapped {
    _Atomic uintptr_t lo, hi;   /* [lo, hi); lo == 0: a free slot */
    char path[512];
} maps[MAX_MAPS];
static pthread_mutex_t maps_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction prev_bus;   /* the handler before ours */
static bool have_prev_bus;

static void put_str(char *buf, size_t cap, size_t *n, const char *s)
{
    while (*s != '\0' && *n + 1 < cap) buf[(*n)++] = *s++;
}

static void on_sigbus(int sig, siginfo_t *si, void *ctx)
{
    uintptr_t a = (uintptr_t)si->si_addr;
    for (int i = 0; i < MAX_MAPS; i++) {
        uintptr_t lo = atomic_load_explicit(&maps[i].lo, memory_order_acquire);
        if (lo == 0 || a < lo || a >= atomic_load_explicit(&maps[i].hi, memory_order_relaxed)) continue;
        char msg[768];
        size_t n = 0;
        put_str(msg, sizeof msg, &n, "shardflow: error: ");
        put_str(msg, sizeof msg, &n, maps[i].path);
        put_str(msg, sizeof msg, &n,
                ": the file became shorter while it was read from its mapping (truncated or replaced during the "
                "run); nothing was written\n");
        ssize_t w = write(2, msg, n);
        (void)w;
        _exit(1);
    }
    /* Not ours: whoever handled SIGBUS before, else the default action
     * (taken when the faulting access is retried after this returns). */
    if (have_prev_bus && (prev_bus.sa_flags & SA_SIGINFO) && prev_bus.sa_sigaction != NULL) {
        prev_bus.sa_sigaction(sig, si, ctx);
    } else if (have_prev_bus && !(prev_bus.sa_flags & SA_SIGINFO) && prev_bus.sa_handler != SIG_DFL &&
               prev_bus.sa_handler != SIG_IGN) {
        prev_bus.sa_handler(sig);
    } else {
        signal(sig, SIG_DFL);
    }
}

void sf_signal_map_add(const void *p, size_t len, const char *path)
{
    pthread_mutex_lock(&maps_lock);
    /* Every time: something may have set its own handler since (which
     * then becomes the one non-mapping faults go to). */
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    if (sigaction(SIGBUS, &sa, &old) == 0 && !((old.sa_flags & SA_SIGINFO) && old.sa_sigaction == on_sigbus)) {
        prev_bus = old;
        have_prev_bus = true;
    }
    for (int i = 0; i < MAX_MAPS; i++) {
        if (atomic_load_explicit(&maps[i].lo, memory_order_relaxed) != 0) continue;
        size_t k = strlen(path);
        if (k >= sizeof maps[i].path) k = sizeof maps[i].path - 1;
        memcpy(maps[i].path, path, k);
        maps[i].path[k] = '\0';
        atomic_store_explicit(&maps[i].hi, (uintptr_t)p + len, memory_order_relaxed);
        atomic_store_explicit(&maps[i].lo, (uintptr_t)p, memory_order_release);
        break;
    }
    pthread_mutex_unlock(&maps_lock);
}

void sf_signal_map_remove(const void *p)
{
    pthread_mutex_lock(&maps_lock);
    for (int i = 0; i < MAX_MAPS; i++)
        if (atomic_load_explicit(&maps[i].lo, memory_order_relaxed) == (uintptr_t)p)
            atomic_store_explicit(&maps[i].lo, 0, memory_order_release);
    pthread_mutex_unlock(&maps_lock);
}


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
