/* Fault tolerance: the checkpoint and fault settings of a workflow, seeded
 * fault injection, and the stop signals (SIGTERM, SIGUSR1).
 *
 * Workflow keys (also --set checkpoint.every_shards=8, and --inject SPEC):
 *   checkpoint:
 *     dir: PATH            default OUTDIR/checkpoint
 *     enabled: BOOL        default true
 *     every_shards: N      a checkpoint after every N shard pieces (0 = off, default 0)
 *     every_seconds: S     and at the first round boundary S seconds after the last (default 60)
 *     restart: auto|never  auto (default): resume from a valid unfinished checkpoint
 *                          of the same workflow; never: always start afresh
 *   fault:
 *     inject: [SPEC, ...]  see sf_fault_parse
 *     seed: N              seed of the injection (default 1)
 *     max_attempts: N      attempts per shard piece before it is excluded (default 3)
 *     backoff: DURATION    delay before the first retry, doubled each time (default 10ms)
 *     task_timeout: DUR    a piece running longer fails with SF_ERR_TIMEOUT (default 0 = none)
 *     min_coverage: X      fraction of rows that must be included (default 1.0)
 *     grace: DURATION      after a stop signal, time to checkpoint before exiting (default 60s)
 *     redistribute: BOOL   dynamic mode: a piece that failed max_attempts on one rank is
 *                          tried (max_attempts more times) on another (default true)
 *     speculate: BOOL      dynamic mode: when the queue is empty, rank 0 re-runs a straggler's
 *                          last units; the first copy to finish counts (default true)
 *     watchdog: DURATION   dynamic mode: a rank holding work that sends nothing for this long
 *                          ends the job with exit code 76 so that it can be restarted from its
 *                          checkpoint (default 0 = off)
 */
#ifndef SF_FAULT_H
#define SF_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shardflow/status.h"

typedef enum sf_restart_mode { SF_RESTART_AUTO = 1, SF_RESTART_NEVER = 2 } sf_restart_mode;

typedef struct sf_checkpoint_config {
    char *dir;                 /* NULL: OUTDIR/checkpoint (owned) */
    bool enabled;              /* default true */
    uint64_t every_shards;     /* 0 = off */
    double every_seconds;      /* 0 = off; default 60 */
    sf_restart_mode restart;   /* default auto */
} sf_checkpoint_config;

typedef enum sf_fault_kind {
    SF_FAULT_ERROR = 1,   /* an agent returns an error */
    SF_FAULT_HANG = 2,    /* an agent does not return (until the task timeout) */
    SF_FAULT_SLOW = 3,    /* a rank processes x times slower */
    SF_FAULT_CORRUPT = 4, /* a shard piece arrives with bad rows */
    SF_FAULT_OOM = 5,     /* a state allocation exceeds the memory budget */
    SF_FAULT_CRASH = 6    /* the rank kills itself with SIGKILL */
} sf_fault_kind;

/* One injected fault. Written "KIND:key=value,key=value", e.g.
 *   error:rate=0.01              each morsel fails with probability 0.01
 *   error:shard=3,attempts=2     every morsel of shard 3 fails on its first 2 attempts
 *   hang:shard=2,seconds=30      shard 2's first morsel sleeps 30 s (default: until the timeout)
 *   slow:rank=1,factor=4         rank 1 takes 4x as long per unit
 *   corrupt:shard=5,rows=10      10 rows of each piece of shard 5 get out-of-domain values
 *   oom:shard=1                  shard 1's processing fails as over the memory budget
 *   crash:rank=1,point=round,at=3      rank 1 SIGKILLs itself at its 3rd round
 *   crash:rank=0,point=ckpt.partial,at=1   ... during its first checkpoint write
 * Keys: rate (per morsel, 0..1), shard (-1 = any), rank (-1 = any), level
 * (pass, -1 = any), attempts (faulty attempts, default: all), seconds,
 * factor, rows, point, at (1-based count of the point on that rank). */
typedef struct sf_fault_spec {
    sf_fault_kind kind;
    double rate;
    int shard, rank, level;
    int attempts;            /* 0 = every attempt */
    double seconds;          /* hang; 0 = until the task timeout */
    double factor;           /* slow */
    uint64_t rows;           /* corrupt */
    char point[32];          /* crash: "round" or a checkpoint point (sf_ckpt_hook) */
    uint64_t at;             /* crash */
} sf_fault_spec;

typedef struct sf_fault_config {
    int ninject;
    sf_fault_spec *inject;   /* owned */
    uint64_t seed;           /* default 1 */
    int max_attempts;        /* default 3 */
    double backoff;          /* seconds, default 0.01 */
    double task_timeout;     /* seconds, 0 = none */
    double min_coverage;     /* default 1.0 */
    double grace;            /* seconds, default 60 */
    bool redistribute;       /* default true */
    bool speculate;          /* default true */
    double watchdog;         /* seconds, 0 = off */
} sf_fault_config;

/* Defaults as listed above. */
void sf_fault_config_defaults(sf_fault_config *f);
void sf_fault_config_fini(sf_fault_config *f);
void sf_checkpoint_config_defaults(sf_checkpoint_config *c);
void sf_checkpoint_config_fini(sf_checkpoint_config *c);

/* Parses one SPEC (see sf_fault_spec) into out. On failure returns
 * SF_ERR_CONFIG with a message naming the spec and the bad key. Not
 * collective. */
sf_status sf_fault_parse(const char *spec, sf_fault_spec *out);

/* Makes f the active injection configuration of this process (rank is
 * this process's rank). Not collective. The configuration is copied. */
sf_status sf_fault_activate(const sf_fault_config *f, int rank);
/* Clears the active configuration and its counters. */
void sf_fault_deactivate(void);

/* Crash points: counts this rank's arrivals at `point` and, if an active
 * crash spec names this rank, point and count, kills the process with
 * SIGKILL (no cleanup: a real crash). Safe to call from any thread. */
void sf_fault_point(const char *point);

/* The decision for one morsel: which fault (0 = none) the active
 * configuration injects into morsel `morsel` (0-based within its piece) of
 * shard `shard`, round `round`, pass `level`, on attempt `attempt`
 * (1-based). A pure function of its arguments, the seed and the specs
 * (rank-specific specs also of this rank), so the same pieces fail for any
 * rank count. Thread-safe. */
sf_fault_kind sf_fault_morsel(int level, uint32_t shard, uint64_t round, uint64_t morsel, int attempt,
                              const sf_fault_spec **spec /* out, may be NULL */);
/* The slow factor of this rank (1.0 when none). */
double sf_fault_slow_factor(void);

/* Stop signals. sf_signal_install sets handlers for SIGTERM and SIGUSR1
 * that only record the signal (and arm an alarm: grace seconds later the
 * process exits with SF_EXIT_INTERRUPTED without further cleanup, the
 * previous checkpoint standing). Call once from the main thread before any
 * OpenMP region; sf_signal_block / sf_signal_unblock bracket the creation
 * of the OpenMP threads so that they never handle these signals. */
#define SF_EXIT_INTERRUPTED 75   /* stopped by a signal after writing a checkpoint */
#define SF_EXIT_COVERAGE 5       /* partial result below fault.min_coverage */
#define SF_EXIT_WATCHDOG 76      /* the watchdog ended the job (a rank made no progress) */
void sf_signal_install(double grace_seconds);
/* The signal received (SIGTERM or SIGUSR1), 0 if none. Async-signal-safe. */
int sf_signal_pending(void);
/* Cancels the grace alarm (the run finishes anyway). */
void sf_signal_disarm(void);
void sf_signal_block(void);
void sf_signal_unblock(void);
/* A mapped input: a SIGBUS inside [p, p + len) (the file was cut while
 * mapped) ends the process with a message naming path and exit status 1
 * instead of a crash; any other SIGBUS goes to the handler there was
 * before. At most 1024 mappings at once (more go unguarded).
 * Thread-safe; not collective. */
void sf_signal_map_add(const void *p, size_t len, const char *path);
void sf_signal_map_remove(const void *p);

#endif
