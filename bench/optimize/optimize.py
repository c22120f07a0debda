#!/usr/bin/env python3
"""bench/optimize: every optimization's time with and without it, in the same run.

Called by bench/optimize/run.sh, which builds shardflow and generates the CSV;
see README.md in this folder for what each row means. Standard library only.

Each group of runs is one switch on one workload and layout. Its variants
(on, off; or several values of morsel_rows) run interleaved, round after
round, so that the machine's drift hits them alike. Every run's run.json
gives the engine's own time (timings.total_seconds, no mpirun start-up) and
the phases; every run's result.json must be byte-identical to the first run
of its group, whatever the switch, or the script fails loudly and prints
both command lines.
"""
import argparse
import csv
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

NOISE = 0.05  # |speedup - 1| below this is "no measurable effect"
HEAVY = 0.5  # min-max ranges overlapping by more than this share of their union: rerun once

# The OpenMP variables the pinning rows set; removed from every other run's
# environment so that what the caller's shell holds does not leak in.
OMP_VARS = ("OMP_PROC_BIND", "OMP_PLACES", "OMP_NUM_THREADS")

CSV_COLUMNS = ["group", "optimization", "workload", "variant", "setting", "ranks", "threads", "round", "rerun",
               "total_seconds", "passes_seconds", "pass_seconds", "read_seconds", "plan_seconds", "wall_seconds",
               "units_sent", "proc_bind", "places", "rank_affinity", "resident_bytes_before", "passes_reused",
               "result_sha256"]


class Stopped(Exception):
    """SIGTERM, SIGHUP or SIGINT: stop, but still write the table of what ran."""


def on_signal(signum, frame):
    raise Stopped(signal.Signals(signum).name)


def say(msg):
    print(f"bench/optimize: {msg}", file=sys.stderr, flush=True)


class Variant:
    def __init__(self, vid, setting, sets=(), np=2, threads=1, bind=False, env=None, prep=None, expect=None):
        self.vid = vid  # short name inside its group ("on", "off", "16384")
        self.setting = setting  # what differs, for the table ("pools: true")
        self.sets = list(sets)
        self.np = np
        self.threads = threads
        self.bind = bind  # True: mpirun's default binding; False: --bind-to none
        self.env = dict(env or {})
        self.prep = prep  # None, "cold", "cache-fresh", "cache-reuse"
        self.expect = dict(expect or {})  # dotted run.json path -> value


class Group:
    def __init__(self, gid, optimization, workload, variants, pairs, phase="pass"):
        self.gid = gid
        self.optimization = optimization
        self.workload = workload  # dict: label, workflow, sets, csv (path or None)
        self.variants = variants
        self.pairs = pairs  # [(on vid, off vid, label)]
        self.phase = phase  # "pass": sum of passes[].seconds; "read": passes[].read_seconds
        self.samples = {v.vid: [] for v in variants}
        self.rerun = False
        self.error = None
        self.note = ""

    def layout(self, vid):
        v = next(x for x in self.variants if x.vid == vid)
        return f"{v.np} x {v.threads}"


def get_path(doc, dotted):
    cur = doc
    for part in dotted.split("."):
        if isinstance(cur, list):
            cur = cur[int(part)]
        elif isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return None
    return cur


def norm(x):
    if isinstance(x, bool):
        return "true" if x else "false"
    return str(x)


def resident_bytes(path):
    """Bytes of path in the page cache (fincore), or None when unknown."""
    if shutil.which("fincore") is None:
        return None
    p = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", path],
                       capture_output=True, text=True)
    try:
        return int(p.stdout.split()[0])
    except (IndexError, ValueError):
        return None


def evict(path, how):
    """Drops path from the page cache: "file" evicts only this file
    (POSIX_FADV_DONTNEED, which leaves everyone else's cache alone), "drop"
    drops the whole page cache (root). Returns the bytes still resident."""
    if how == "file":
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages cannot be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    elif how == "drop":
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    return resident_bytes(path)


def warm(path):
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


class Bench:
    def __init__(self, args):
        self.a = args
        self.shardflow = os.path.join(args.bin, "shardflow")
        self.raw = []
        self.csv_file = None  # every run is written as it ends, so a stopped run keeps its rows
        self.failures = []
        self.env = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
        self.cold_how = args.cold
        self.cold_note = ""

    # ---- one run -------------------------------------------------------------------
    def command(self, g, v, outdir):
        cmd = ["mpirun", "-np", str(v.np), "--report-bindings"]
        if not v.bind:
            cmd += ["--bind-to", "none"]
        cmd += ["-x", f"OMP_NUM_THREADS={v.threads}"]
        for k, val in v.env.items():
            cmd += ["-x", f"{k}={val}"]
        cmd += [self.shardflow, "run", g.workload["workflow"], "--out", outdir, "--threads", str(v.threads)]
        for s in g.workload["sets"] + v.sets:
            cmd += ["--set", s]
        return cmd

    def once(self, g, v, rnd):
        outdir = os.path.join(self.a.work, g.gid, f"{v.vid}-{rnd}")
        shutil.rmtree(outdir, ignore_errors=True)
        os.makedirs(os.path.dirname(outdir), exist_ok=True)
        resident = ""
        if v.prep == "cold":
            r = evict(g.workload["csv"], self.cold_how)
            resident = "" if r is None else str(r)
        elif v.prep == "cache-fresh":
            shutil.rmtree(os.path.join(self.a.work, g.gid, f"cache-{rnd}"), ignore_errors=True)
        cmd = self.command(g, v, outdir)
        if v.prep in ("cache-fresh", "cache-reuse"):
            cmd += ["--set", "cache.enabled=true", "--set", f"cache.dir={os.path.join(self.a.work, g.gid, f'cache-{rnd}')}"]
        t0 = time.time()
        p = subprocess.run(cmd, env=self.env, capture_output=True, text=True)
        wall = time.time() - t0
        if p.returncode != 0:
            raise RuntimeError(f"run failed (exit {p.returncode}): {' '.join(cmd)}\n{(p.stdout + p.stderr)[-3000:]}")
        with open(os.path.join(outdir, "run.json")) as f:
            rj = json.load(f)
        with open(os.path.join(outdir, "result.json"), "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        # The switch must have reached the engine: run.json says what it ran with.
        for path, want in v.expect.items():
            have = get_path(rj, path)
            if norm(have) != norm(want):
                raise RuntimeError(f"{g.gid}/{v.vid}: run.json {path} is {have!r}, expected {want!r}: {' '.join(cmd)}")
        # What --report-bindings says of each rank's affinity as MPI starts:
        # mpirun's binding, or with --bind-to none the master thread's pinning
        # by OpenMP (libgomp pins it to the first place before main runs).
        bindings = re.findall(r"MCW rank (\d+) (is not bound|bound to [^\n]*)", p.stdout + p.stderr)
        binding = ";".join(f"{r}:{'none' if b.startswith('is not') else 'bound'}" for r, b in sorted(bindings))
        t = rj["timings"]
        passes = [x["seconds"] for x in t["passes"]]
        s = {
            "round": rnd, "total": t["total_seconds"], "passes": sum(passes),
            "pass_list": ";".join(f"{x:.4f}" for x in passes),
            "read": sum(x.get("read_seconds", 0.0) for x in t["passes"]),
            "plan": t.get("plan_seconds", 0.0), "wall": wall,
            "units": sum(x.get("units_sent", 0) for x in t["passes"]),
            "proc_bind": rj.get("thread_binding", {}).get("proc_bind", ""),
            "places": rj.get("thread_binding", {}).get("places", ""),
            "affinity": binding, "resident": resident, "sha": sha,
            "reused": rj.get("cache", {}).get("passes_reused", ""), "cmd": cmd, "rerun": int(g.rerun),
        }
        g.samples[v.vid].append(s)
        self.raw.append((g, v, s))
        if self.csv_file:
            csv.writer(self.csv_file).writerow([
                g.gid, g.optimization, g.workload["label"], v.vid, v.setting, v.np, v.threads, s["round"] + 1,
                s["rerun"], f"{s['total']:.4f}", f"{s['passes']:.4f}", s["pass_list"], f"{s['read']:.4f}",
                f"{s['plan']:.4f}", f"{s['wall']:.3f}", s["units"], s["proc_bind"], s["places"], s["affinity"],
                s["resident"], s["reused"], s["sha"]])
            self.csv_file.flush()
        shutil.rmtree(outdir, ignore_errors=True)
        return s

    # ---- one group -----------------------------------------------------------------
    def rounds(self, g, n, first):
        for rnd in range(first, first + n):
            if g.workload.get("csv") and not any(v.prep == "cold" for v in g.variants):
                warm(g.workload["csv"])  # a cold row before this one must not slow its first run
            line = []
            for v in g.variants:
                s = self.once(g, v, rnd)
                line.append(f"{v.vid} {s['total']:.3f}")
            say(f"  round {rnd + 1}: " + ", ".join(line))
            shutil.rmtree(os.path.join(self.a.work, g.gid, f"cache-{rnd}"), ignore_errors=True)

    def check_results(self, g):
        first = None
        for v in g.variants:
            for s in g.samples[v.vid]:
                if first is None:
                    first = (v, s)
                elif s["sha"] != first[1]["sha"]:
                    msg = (f"{g.gid}: result.json differs between '{first[0].setting}' and '{v.setting}' "
                           f"(round {s['round'] + 1}); reproduce with:\n  {' '.join(first[1]['cmd'])}\n"
                           f"  {' '.join(s['cmd'])}")
                    self.failures.append(msg)
                    g.error = "RESULTS DIFFER"
                    say("ERROR: " + msg)
                    return

    def run_group(self, g, i, n):
        say(f"[{i}/{n}] {g.gid}: {g.optimization} on {g.workload['label']}, "
            f"{len(g.variants)} variants x {self.a.repeats} rounds")
        try:
            self.rounds(g, self.a.repeats, 0)
            if any(ambiguous(g, on, off) for on, off, _ in g.pairs):
                say(f"  {g.gid}: noisy (ranges overlap or the two ratios disagree): running {self.a.repeats} more rounds")
                g.rerun = True
                self.rounds(g, self.a.repeats, self.a.repeats)
        except RuntimeError as e:
            g.error = "RUN FAILED"
            self.failures.append(str(e))
            say("ERROR: " + str(e))
            return
        self.check_results(g)

    # ---- groups --------------------------------------------------------------------
    def groups(self):
        a = self.a
        peers = "bench/peers/peers.yaml"
        rows_m = f"{a.rows / 1e6:g}M" if a.rows >= 1000000 else str(a.rows)
        CSV = {"label": f"CSV {rows_m} rows, peers scan", "workflow": peers,
               "sets": [f"input.path={a.csv}"], "csv": a.csv, "short": "csv"}
        SYN = {"label": f"synthetic {rows_m} rows, peers scan", "workflow": peers,
               "sets": [f"input={{format: synthetic, generator: requests, rows: {a.rows}, seed: 42}}"],
               "csv": None, "short": "syn"}
        H5 = {"label": f"HDF5 {rows_m} rows, ungrouped stats of 3 numeric columns", "workflow": "bench/peers/peers_hdf5.yaml",
              "sets": [f"input.path={a.h5}"], "csv": None, "short": "h5"}
        DEMO = {"label": "inputs/demo.yaml (2 passes, 2.4M rows)", "workflow": "inputs/demo.yaml", "sets": [],
                "csv": None, "short": "demo"}
        G = []

        def onoff(gid, opt, wl, key, on, off, base=(), np=2, threads=1, expect_key=None, prep=None, phase="pass"):
            ex_on = {expect_key: on} if expect_key else {}
            ex_off = {expect_key: off} if expect_key else {}
            vs = [Variant("on", f"{key}={norm(on)}", list(base) + [f"{key}={norm(on)}"], np, threads,
                          prep=prep, expect=ex_on),
                  Variant("off", f"{key}={norm(off)}", list(base) + [f"{key}={norm(off)}"], np, threads,
                          prep=prep, expect=ex_off)]
            G.append(Group(gid, opt, wl, vs, [("on", "off", "")], phase))

        # distribute.mode: every rank reads its part vs rank 0 reads and sends.
        for wl in (CSV, SYN):
            onoff(f"mode-{wl['short']}-2x1", "distribute.mode parallel-read vs static", wl, "distribute.mode",
                  "parallel-read", "static", expect_key="distribute")
        # Exchange under hash sharding: skip the all-to-all vs move records to their shard's rank.
        onoff("exchange-csv-2x1", "distribute.exchange never vs auto (hash by user_id)", CSV, "distribute.exchange",
              "never", "auto", base=["distribute.mode=parallel-read", "shard.strategy=hash", "shard.key=user_id"])
        G[-1].variants[0].expect = {"optimizations.exchange": False}
        G[-1].variants[1].expect = {"optimizations.exchange": True}
        # Overlap of reading (and sending) with processing.
        for mode, np, th in (("static", 2, 1), ("static", 1, 2), ("parallel-read", 1, 2), ("parallel-read", 2, 1)):
            onoff(f"overlap-{mode}-csv-{np}x{th}", f"distribute.overlap ({mode})", CSV, "distribute.overlap", True,
                  False, base=[f"distribute.mode={mode}"], np=np, threads=th, expect_key="optimizations.overlap")
        # Large sequential reads: only visible with a cold page cache.
        onoff("fadvise-csv-2x1", "input.fadvise" + ("" if self.cold_how != "warm" else " (warm cache)"), CSV,
              "input.fadvise", True, False, expect_key="optimizations.fadvise",
              prep="cold" if self.cold_how != "warm" else None, phase="read")
        # Unit buffer pools: matter where units are packed per round and destination.
        for wl, mode in ((CSV, "static"), (SYN, "static"), (SYN, "dynamic")):
            onoff(f"pools-{mode}-{wl['short']}-2x1", f"distribute.pools ({mode})", wl, "distribute.pools", True, False,
                  base=[f"distribute.mode={mode}"], expect_key="optimizations.pools")
        # Morsel size: the default against smaller and larger morsels, 1 rank x 2 threads.
        for wl in (CSV, SYN):
            sizes = [16384, 1024, 4096, 65536, 262144]
            vs = [Variant(str(m), f"morsel_rows={m}", [f"distribute.morsel_rows={m}"], 1, 2,
                          expect={"config.distribute.morsel_rows": m}) for m in sizes]
            G.append(Group(f"morsel-{wl['short']}-1x2", "distribute.morsel_rows 16384 (default)", wl, vs,
                           [("16384", str(m), f"vs {m}") for m in sizes[1:]]))
        # Batching of shard pieces into one message: many shards. Hash sharding,
        # so that every round holds a piece of every shard (size sharding cuts
        # contiguous blocks: a round of 65536 rows touches only a few shards).
        # Static mode with 1024 shards and no batching posts some 500 non-blocking
        # sends a round; under the default 256MiB budget tens of thousands are in
        # flight at once and the run fails (MPI_ERR_TRUNCATE on rank 1) or hangs
        # from about 4.5 million rows on (see README.md). A 16MiB budget keeps
        # the sends in flight to a few thousand; both variants get it.
        for wl, mode, k in ((CSV, "static", 1024), (CSV, "static", 64), (SYN, "static", 1024), (SYN, "static", 64),
                            (SYN, "dynamic", 1024)):
            base = [f"distribute.mode={mode}", "shard.strategy=hash", "shard.key=user_id", f"shard.shards={k}"]
            budget = ""
            if mode == "static" and k >= 1024:
                base.append("distribute.memory_budget=16MiB")
                budget = ", memory_budget 16MiB"
            onoff(f"batch-{mode}-k{k}-{wl['short']}-2x1", f"distribute.batch_pieces ({mode}, hash, {k} shards{budget})",
                  wl, "distribute.batch_pieces", True, False, base=base, expect_key="optimizations.batch_pieces")
        # Size-sharded parallel-read pieces as views of the batch read, against
        # routing row by row and packing copies (numbers only: HDF5 columns).
        if a.h5:
            for np_, th in ((2, 1), (1, 2)):
                onoff(f"inplace-h5-{np_}x{th}", "distribute.in_place (parallel-read, size)", H5, "distribute.in_place",
                      True, False, np=np_, threads=th, expect_key="optimizations.in_place")
            # Plain numeric HDF5 columns lent from a mapping of the file against
            # copied out of the page cache with pread.
            for np_, th in ((2, 1), (1, 2)):
                onoff(f"mmap-h5-{np_}x{th}", "input.mmap (HDF5 columns from a mapping)", H5, "input.mmap",
                      True, False, np=np_, threads=th, expect_key="optimizations.mmap")
            # The stats agent's vector block kernels (AVX-512) against the per-value path.
            vs = [Variant("on", "stats block kernels (default)", [], 2, 1),
                  Variant("off", "SF_STATS_SIMD=0", [], 2, 1, env={"SF_STATS_SIMD": "0"})]
            G.append(Group("simd-h5-2x1", "stats vector block kernels (AVX-512)", H5, vs, [("on", "off", "")]))
            # The block loops' software prefetch of the next block.
            vs = [Variant("on", "next block prefetched (default)", [], 2, 1),
                  Variant("off", "SF_STATS_PREFETCH=0", [], 2, 1, env={"SF_STATS_PREFETCH": "0"})]
            G.append(Group("prefetch-h5-2x1", "stats block loops prefetch the next block", H5, vs,
                           [("on", "off", "")]))
        # Thread pinning.
        for wl in (CSV, SYN):
            vs = [Variant("on", "OMP_PROC_BIND=close OMP_PLACES=cores", [], 1, 2,
                          env={"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"},
                          expect={"thread_binding.proc_bind": "close"}),
                  Variant("off", "no OMP_PROC_BIND/OMP_PLACES", [], 1, 2, expect={"thread_binding.proc_bind": "false"})]
            G.append(Group(f"pin-omp-{wl['short']}-1x2", "thread pinning OMP_PROC_BIND=close OMP_PLACES=cores "
                           "(mpirun --bind-to none)", wl, vs, [("on", "off", "")]))
            vs = [Variant("on", "mpirun default binding", [], 2, 1, bind=True),
                  Variant("off", "mpirun --bind-to none", [], 2, 1, bind=False)]
            G.append(Group(f"pin-mpi-{wl['short']}-2x1", "rank binding: mpirun default vs --bind-to none", wl, vs,
                           [("on", "off", "")]))
        # Stage result cache: a run that finds every pass cached, and the run that fills the cache.
        vs = [Variant("off", "cache.enabled=false", ["cache.enabled=false"], 2, 1, expect={"cache.enabled": False}),
              Variant("fresh", "cache.enabled=true, empty cache.dir", [], 2, 1, prep="cache-fresh",
                      expect={"cache.enabled": True, "cache.passes_reused": 0}),
              Variant("reuse", "cache.enabled=true, filled cache.dir", [], 2, 1, prep="cache-reuse",
                      expect={"cache.enabled": True, "cache.passes_reused": 2})]
        G.append(Group("cache-demo-2x1", "cache.enabled", DEMO, vs,
                       [("reuse", "off", "second run (every pass reused)"),
                        ("fresh", "off", "first run (fills the cache)")]))
        return G

    # ---- cold page cache -----------------------------------------------------------
    def check_cold(self):
        if self.cold_how == "warm":
            self.cold_note = "input.fadvise measured with a warm page cache (SF_OPT_COLD=warm)"
            return
        size = os.path.getsize(self.a.csv)
        try:
            r = evict(self.a.csv, self.cold_how)
        except OSError as e:
            r, err = None, str(e)
        else:
            err = "fincore not found" if r is None else ""
        if r is not None and r <= size // 100:
            how = ("the file's pages dropped with posix_fadvise(POSIX_FADV_DONTNEED) before each run"
                   if self.cold_how == "file" else "sync; echo 3 > /proc/sys/vm/drop_caches before each run")
            self.cold_note = f"input.fadvise measured cold: {how}"
        else:
            self.cold_how = "warm"
            self.cold_note = (f"input.fadvise could not be measured cold ({err or f'{r} bytes stayed cached'}): "
                              "measured warm")
        warm(self.a.csv)
        say(self.cold_note)


# ---- statistics and verdicts -----------------------------------------------------------
def totals(g, vid):
    return [s["total"] for s in g.samples[vid]]


def overlap(a, b):
    lo, hi = max(min(a), min(b)), min(max(a), max(b))
    union = max(max(a), max(b)) - min(min(a), min(b))
    if union <= 0:
        return 1.0
    return max(0.0, hi - lo) / union


def paired(g, on, off):
    """Median over rounds of off/on within the same round: the two ran a few
    seconds apart, so this ratio is less exposed to the machine's drift over
    minutes than the ratio of the medians."""
    a = {s["round"]: s["total"] for s in g.samples[on]}
    b = {s["round"]: s["total"] for s in g.samples[off]}
    r = [b[k] / a[k] for k in a if k in b and a[k] > 0]
    return statistics.median(r) if r else float("nan")


def judge(g, on, off):
    """(speedup of the medians, paired ratio, verdict, noisy). An effect is
    claimed only when both ratios are beyond NOISE on the same side; noisy:
    they disagree, or the min-max ranges overlap by more than HEAVY."""
    a, b = totals(g, on), totals(g, off)
    d, p = statistics.median(b) / statistics.median(a), paired(g, on, off)
    if abs(d - 1) < NOISE and abs(p - 1) < NOISE:
        return d, p, "no measurable effect", False
    if d >= 1 + NOISE and p >= 1 + NOISE:
        v = "pays"
    elif d <= 1 - NOISE and p <= 1 - NOISE:
        v = "costs"
    else:
        return d, p, "no measurable effect (noisy: the two ratios disagree)", True
    if overlap(a, b) > HEAVY:
        return d, p, v + " (noisy: ranges overlap)", True
    return d, p, v, False


def ambiguous(g, on, off):
    if not g.samples[on] or not g.samples[off]:
        return False
    return judge(g, on, off)[3]


def fmt_range(xs):
    return f"{statistics.median(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})"


def phase_of(g, vid):
    key = "read" if g.phase == "read" else "passes"
    return statistics.median(s[key] for s in g.samples[vid])


def table(groups):
    head = ("| optimization | workload | layout | on | off | time on (s) median (min-max) | time off (s) | "
            "speedup (off/on) | per-round off/on | phase on / off (s) | verdict |")
    lines = [head, "|" + "---|" * 11]
    for g in groups:
        for on, off, label in g.pairs:
            von = next(v for v in g.variants if v.vid == on)
            voff = next(v for v in g.variants if v.vid == off)
            opt = g.optimization + (f", {label}" if label else "")
            if g.error or not g.samples[on] or not g.samples[off]:
                lines.append(f"| {opt} | {g.workload['label']} | {g.layout(on)} | {von.setting} | {voff.setting} "
                             f"| - | - | - | - | - | **{g.error or 'not run'}** |")
                continue
            d, p, v, _ = judge(g, on, off)
            n = len(g.samples[on])
            extra = f"; rerun, n={n}" if g.rerun else ""
            lines.append(
                f"| {opt} | {g.workload['label']} | {g.layout(on)} | {von.setting} | {voff.setting} | "
                f"{fmt_range(totals(g, on))} | {fmt_range(totals(g, off))} | {d:.3f} | {p:.3f} | "
                f"{g.phase} {phase_of(g, on):.3f} / {phase_of(g, off):.3f} | {v}{extra} |")
    return "\n".join(lines)


def retable(a):
    """The table of an earlier run, from its raw rows (e.g. after changing
    the verdict rule, or to merge a rerun of some rows into a file)."""
    a.rows, a.csv, a.work, a.repeats, a.bin = 10000000, "", "", 0, ""
    a.h5 = a.h5 or "requests.h5"  # so that the HDF5 rows are known
    groups = {g.gid: g for g in Bench(a).groups()}
    seen = []
    with open(a.table_from, newline="") as f:
        for row in csv.DictReader(f):
            g = groups.get(row["group"])
            if g is None or row["variant"] not in g.samples:
                say(f"{a.table_from}: unknown group or variant {row['group']}/{row['variant']}: skipped")
                continue
            if g not in seen:
                seen.append(g)
                g.optimization = row["optimization"]
                g.workload = dict(g.workload, label=row["workload"])
            g.rerun = g.rerun or row["rerun"] == "1"
            g.samples[row["variant"]].append({"round": int(row["round"]) - 1, "total": float(row["total_seconds"]),
                                              "passes": float(row["passes_seconds"]),
                                              "read": float(row["read_seconds"])})
    print(table(seen))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", help="folder holding the shardflow binary")
    ap.add_argument("--csv", help="the generated requests CSV")
    ap.add_argument("--h5", default="", help="the generated requests table as HDF5 (rows of the in-place and kernel rows)")
    ap.add_argument("--rows", type=int)
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--out", help="where optimize.md and optimize.csv go")
    ap.add_argument("--work", help="scratch folder for the runs")
    ap.add_argument("--cold", choices=("file", "drop", "warm"), default="file")
    ap.add_argument("--only", default="", help="run only the groups whose id matches this regular expression")
    ap.add_argument("--table-from", metavar="CSV", help="run nothing: print the table of an earlier optimize.csv")
    a = ap.parse_args()
    if a.table_from:
        return retable(a)
    missing = [k for k in ("bin", "csv", "rows", "repeats", "out", "work") if getattr(a, k) is None]
    if missing:
        ap.error("missing " + ", ".join("--" + k for k in missing))

    b = Bench(a)
    groups = [g for g in b.groups() if re.search(a.only, g.gid)]
    if not groups:
        say(f"no group matches '{a.only}'")
        return 2
    if any(v.prep == "cold" for g in groups for v in g.variants):
        b.check_cold()
        if b.cold_how == "warm":
            for g in groups:
                for v in g.variants:
                    if v.prep == "cold":
                        v.prep = None
                if g.gid.startswith("fadvise"):
                    g.optimization = "input.fadvise (warm cache)"
    os.makedirs(a.out, exist_ok=True)
    b.csv_file = open(os.path.join(a.out, "optimize.csv"), "w", newline="")
    csv.writer(b.csv_file).writerow(CSV_COLUMNS)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)
    load0 = os.getloadavg()
    t0 = time.time()
    try:
        for i, g in enumerate(groups, 1):
            b.run_group(g, i, len(groups))
    except Stopped as e:
        # subprocess.run has already killed the mpirun it was waiting for.
        g.error = "STOPPED"
        b.failures.append(f"stopped by {e} during {g.gid}: the table holds the rows that ran")
        say(f"stopped by {e}: writing the table of what ran")
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    b.csv_file.close()
    load1 = os.getloadavg()
    minutes = (time.time() - t0) / 60

    version = subprocess.run([b.shardflow, "--version"], capture_output=True, text=True).stdout.strip()
    header = [
        f"bench/optimize: {a.rows} rows, {a.repeats} interleaved rounds per row (medians of run.json "
        f"timings.total_seconds, no mpirun start-up), {os.cpu_count()} cores, {version}",
        f"{time.strftime('%Y-%m-%d %H:%M')}, {minutes:.1f} min; load average {load0[0]:.2f} at the start, "
        f"{load1[0]:.2f} at the end",
        "verdict: pays / costs when the ratio of the medians and the median per-round ratio are both 5% or more "
        "beyond 1 on the same side, no measurable effect when both are within 5%; noisy when they disagree or "
        "the min-max ranges overlap by more than half their union (such a row gets REPEATS more rounds at once)",
    ]
    if b.cold_note:
        header.append(b.cold_note)
    md = "\n".join(header) + "\n\n" + table(groups) + "\n"
    print()
    print(md)
    with open(os.path.join(a.out, "optimize.md"), "w") as f:
        f.write("\n\n".join(header) + "\n\n" + table(groups) + "\n")
    say(f"table in {os.path.join(a.out, 'optimize.md')}, every run in {os.path.join(a.out, 'optimize.csv')}")
    if b.failures:
        say(f"FAILED: {len(b.failures)} problem(s):")
        for m in b.failures:
            print("  " + m, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
