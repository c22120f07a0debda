#!/usr/bin/env python3
"""Fault injection, retries and exclusion, for every fault kind at -np 2 and 3,
static and dynamic distribution.

The default workflow (inputs/demo.yaml: two passes, the second voting against
the first's baselines) on 1.2M rows, with each fault:
  - recoverable faults (error and oom on the first attempts, a hang ended by
    fault.task_timeout, a hang that ends by itself, a straggler rank, a crash
    followed by --restart) give a result.json byte-identical to the fault-free
    reference, and the retries the closed form predicts;
  - a persistent error on one shard and corrupt rows in one shard give a
    partial result whose coverage leaves out exactly the rows of that shard
    (resp. R rows of each of its pieces), computed without the engine: the
    requests generator's CSV export of the same rows, routed with xxh64 in
    Python, cut into rounds of input.batch_rows; the retries are
    (max_attempts - 1) per excluded piece, (2 max_attempts - 1) in dynamic
    mode where fault.redistribute tries it on a second rank; the partial
    result is identical across rank counts, modes and redistribution;
  - fault.min_coverage above the achieved share stops every rank with exit
    code 5 and one message naming min_coverage, the shard and its first
    failure (the first excluded piece in pass and round order), writing no
    result.json;
  - error:rate=1 with min_coverage 0 excludes everything: rows_done 0.
A small size-sharded workflow, whose shards and pieces are closed forms of
the row count, checks the same coverage figures on pieces of several morsels.

usage: fault_matrix.py MPIEXEC SHARDFLOW SOURCE_DIR
Environment: SF_FAULT_NP (rank counts, default 2,3), SF_FAULT_MODES (default
static,dynamic).
"""
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

MPIEXEC, BINARY, SRC = sys.argv[1], sys.argv[2], sys.argv[3]
NPS = [int(s) for s in os.environ.get("SF_FAULT_NP", "2,3").split(",")]
MODES = os.environ.get("SF_FAULT_MODES", "static,dynamic").split(",")
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
DEMO = os.path.join(SRC, "inputs", "demo.yaml")
ROWS = 1200000
SEED = 42              # demo.yaml's input.seed
K = 64                 # demo.yaml's shard.shards
MORSEL_ROWS = 16384    # distribute.morsel_rows default (README)
# Larger rounds than the default keep the hang cases short (each piece of
# the hanging shard waits for the timeout once); the figures below are
# computed from the batch_rows run.json reports.
COMMON = ["--set", "input.rows=%d" % ROWS, "--set", "input.batch_rows=262144"]
RUN_TIMEOUT = 400

failures = []
tmp = tempfile.mkdtemp(prefix="sf-faults-")


def expect(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


class Proc:
    def __init__(self, rc, out, err, timed_out):
        self.returncode, self.stdout, self.stderr, self.timed_out = rc, out, err, timed_out


def run(cmd, timeout=RUN_TIMEOUT, what=None):
    """Runs cmd in its own process group; on timeout kills the group and fails."""
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        return Proc(p.returncode, out, err, False)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        expect(False, "%s: finished within %d s (killed)" % (what or " ".join(cmd[:6]), timeout))
        return Proc(-9, out, err, True)


def shardflow(np_, out, args, timeout=RUN_TIMEOUT, what=None, rank_rc=False):
    """mpirun -np N shardflow run ... ; with rank_rc each rank's own exit
    status is recorded in out.rc/RANK (the wrapper exits 0 so that mpirun
    lets every rank finish)."""
    cmd = [MPIEXEC, "-np", str(np_)]
    if rank_rc:
        rcdir = out + ".rc"
        os.makedirs(rcdir, exist_ok=True)
        cmd += ["sh", "-c", '"$0" "$@"; echo $? > "%s/${OMPI_COMM_WORLD_RANK}"; exit 0' % rcdir]
    cmd += [BINARY, "run"] + args + ["--out", out]
    return run(cmd, timeout, what)


def rank_codes(out, np_):
    codes = []
    for r in range(np_):
        path = os.path.join(out + ".rc", str(r))
        codes.append(int(open(path).read().strip()) if os.path.exists(path) else None)
    return codes


def load(out, name):
    path = os.path.join(out, name)
    return json.load(open(path)) if os.path.exists(path) else None


def read_bytes(out):
    path = os.path.join(out, "result.json")
    return open(path, "rb").read() if os.path.exists(path) else None


# ---- an independent router: xxh64 of the key, as the README defines hash sharding ----
M64 = (1 << 64) - 1
P1, P2, P3, P4, P5 = (11400714785074694791, 14029467366897019727, 1609587929392839161,
                      9650029242287828579, 2870177450012600261)


def rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & M64


def xxh64_u64(v, seed=0):
    """XXH64 of the 8 little-endian bytes of v (the reference algorithm, short input)."""
    h = (seed + P5 + 8) & M64
    k = (rotl((v * P2) & M64, 31) * P1) & M64
    h ^= k
    h = (rotl(h, 27) * P1 + P4) & M64
    h ^= h >> 33
    h = (h * P2) & M64
    h ^= h >> 29
    h = (h * P3) & M64
    h ^= h >> 32
    return h


# Published test vector (xxhsum of 8 zero bytes).
expect(xxh64_u64(0) == 0x34C96ACDCADB1BBB, "xxh64 reference implementation matches its test vector")


def demo_pieces(batch_rows):
    """Rows of every (round, shard) of the demo input, from the generator's CSV
    export of the same rows, routed in Python."""
    csv = os.path.join(tmp, "demo.csv")
    p = run([BINARY, "gen", "--rows", str(ROWS), "--seed", str(SEED), "--incidents", "--format", "csv",
             "-o", csv], what="gen demo.csv")
    if not expect(p.returncode == 0, "gen exports the demo rows as CSV (%s)" % p.stderr.strip()[-200:]):
        return None
    nrounds = -(-ROWS // batch_rows)
    per = [[0] * K for _ in range(nrounds)]
    cache = {}
    with open(csv) as f:
        header = f.readline().rstrip("\n").split(",")
        col = header.index("user_id")
        for i, line in enumerate(f):
            u = int(line.split(",", col + 1)[col])
            s = cache.get(u)
            if s is None:
                s = cache[u] = xxh64_u64(u & M64) % K
            per[i // batch_rows][s] += 1
    os.remove(csv)
    if os.path.exists(csv + ".truth.json"):   # gen --incidents writes the ground truth beside it
        os.remove(csv + ".truth.json")
    return per


def cfg_args(mode):
    return ["--set", "distribute.mode=%s" % mode]


def label(np_, mode):
    return "np%d %s" % (np_, mode)


# ---- the fault-free reference ----
ref_out = os.path.join(tmp, "ref")
p = shardflow(2, ref_out, [DEMO] + COMMON + cfg_args("static"), what="reference")
if not expect(p.returncode == 0, "fault-free reference exits 0 (%s)" % p.stderr.strip()[-300:]):
    sys.exit("no reference; outputs in %s" % tmp)
REF = read_bytes(ref_out)
ref_run = load(ref_out, "run.json")
ref_res = json.loads(REF)
batch_rows = ref_run["input"]["batch_rows"]
npasses = len(ref_run["timings"]["passes"])
expect(npasses == 2, "demo runs two passes (analyze, then detect after it): %d" % npasses)
expect(ref_run["input"]["rows"] == ROWS, "reference read %d rows" % ROWS)
expect(ref_res["partial"] is False and ref_res["quality"]["coverage"]["rows_done"] == npasses * ROWS,
       "reference is complete: rows_done = passes x rows")
print("batch_rows %d (after clamping), %d rounds per pass" % (batch_rows, -(-ROWS // batch_rows)))

per = demo_pieces(batch_rows)
if per is None:
    sys.exit("cannot compute the expectations; outputs in %s" % tmp)
shard_rows = [sum(r[s] for r in per) for s in range(K)]
expect(shard_rows == ref_run["shards"]["rows"],
       "rows per shard routed in Python from the CSV export equal run.json shards.rows")


def pieces_of(s):
    return sum(1 for r in per if r[s] > 0)


all_pieces = sum(pieces_of(s) for s in range(K))
S_ERR, S_ATT, S_OOM, S_HANG, S_COR, R_COR = 5, 7, 3, 2, 4, 7
print("shard %d: %d rows in %d pieces; shard %d: %d rows in %d pieces (smallest %d rows)" % (
    S_ERR, shard_rows[S_ERR], pieces_of(S_ERR), S_COR, shard_rows[S_COR], pieces_of(S_COR),
    min(r[S_COR] for r in per if r[S_COR] > 0)))
expect(min(r[S_COR] for r in per if r[S_COR] > 0) >= R_COR,
       "every piece of shard %d has at least %d rows (precondition of the corrupt case)" % (S_COR, R_COR))

partial_bytes = {"error": {}, "corrupt": {}}
retry_counts = {}

for np_ in NPS:
    for mode in MODES:
        L = label(np_, mode)
        base = [DEMO] + COMMON + cfg_args(mode)
        d = os.path.join(tmp, "np%d-%s" % (np_, mode))
        os.makedirs(d)

        # Fault-free at this configuration: the reference's bytes.
        out = os.path.join(d, "clean")
        p = shardflow(np_, out, base, what=L + " clean")
        expect(p.returncode == 0 and read_bytes(out) == REF, "%s: fault-free result identical to the reference" % L)

        # (a) Recoverable faults: the exact result.
        exact = [
            ("error:shard=%d,attempts=2" % S_ATT, [], 2 * npasses * pieces_of(S_ATT)),
            ("error:rate=0.05,attempts=1", [], None),
            ("oom:shard=%d,attempts=1" % S_OOM, [], npasses * pieces_of(S_OOM)),
            ("hang:shard=%d,attempts=1" % S_HANG, ["--set", "fault.task_timeout=1s"], npasses * pieces_of(S_HANG)),
            ("hang:shard=%d,seconds=0.5" % S_HANG, [], 0),   # no timeout: the hang ends by itself
            ("slow:rank=1,factor=3", [], 0),
        ]

        def run_exact(i):
            spec, extra, _ = exact[i]
            return shardflow(np_, os.path.join(d, "exact%d" % i),
                             base + ["--inject", spec, "--set", "fault.max_attempts=3"] + extra,
                             what="%s %s" % (L, spec))
        # The two hang cases spend most of their time waiting for the hung
        # morsels: they run side by side, after the others (one at a time).
        hangs = [i for i, e in enumerate(exact) if e[0].startswith("hang:")]
        procs = {i: run_exact(i) for i in range(len(exact)) if i not in hangs}
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            procs.update(zip(hangs, pool.map(run_exact, hangs)))
        for i, (spec, extra, retries) in enumerate(exact):
            out = os.path.join(d, "exact%d" % i)
            p = procs[i]
            if not expect(p.returncode == 0, "%s %s: exits 0 (%s)" % (L, spec, p.stderr.strip()[-300:])):
                continue
            expect(read_bytes(out) == REF, "%s %s: result.json identical to the fault-free reference" % (L, spec))
            info = load(out, "run.json")
            f = info["faults"]
            expect(f["pieces_excluded"] == 0 and f["rows_excluded"] == 0,
                   "%s %s: nothing excluded (%s)" % (L, spec, f))
            if retries is not None:
                expect(f["retries"] == retries, "%s %s: retries %d == %d (closed form)" % (L, spec, f["retries"], retries))
            else:
                expect(f["retries"] > 0, "%s %s: some pieces retried (%d)" % (L, spec, f["retries"]))
                retry_counts.setdefault(spec, set()).add(f["retries"])

        # Crash of a rank, then --restart: the exact result.
        out = os.path.join(d, "crash")
        ck = ["--set", "checkpoint.every_shards=64"]
        p = shardflow(np_, out, base + ck + ["--inject", "crash:rank=1,point=round,at=6"], what=L + " crash")
        expect(p.returncode != 0 and "injected crash" in p.stderr,
               "%s crash:rank=1: the run dies (exit %d)" % (L, p.returncode))
        expect(not os.path.exists(os.path.join(out, "result.json")), "%s crash: no result.json" % L)
        p = shardflow(np_, out, base + ck + ["--restart"], what=L + " restart")
        if expect(p.returncode == 0, "%s restart after the crash exits 0 (%s)" % (L, p.stderr.strip()[-300:])):
            expect(read_bytes(out) == REF, "%s crash + --restart: result.json identical to the reference" % L)
            rs = load(out, "run.json")["restart"]
            expect(rs["resumed"] is True and rs["from_sequence"] >= 1,
                   "%s restart resumed from checkpoint %d" % (L, rs["from_sequence"]))

        # (b) A persistent error on one shard: partial, that shard's rows out.
        # fault.h: a piece is excluded after max_attempts attempts; in
        # dynamic mode fault.redistribute (default true) first tries it
        # max_attempts more times on another rank.
        M = 3
        variants = [("", []), (" redistribute=false", ["--set", "fault.redistribute=false"])] \
            if mode == "dynamic" else [("", [])]
        for vname, vargs in variants:
            moved = mode == "dynamic" and not vargs
            out = os.path.join(d, "persist" + vname.strip().replace("=", "-"))
            p = shardflow(np_, out, base + vargs + ["--inject", "error:shard=%d" % S_ERR,
                                                    "--set", "fault.min_coverage=0.5",
                                                    "--set", "fault.max_attempts=%d" % M],
                          what=L + " persistent error" + vname)
            LV = L + vname
            if not expect(p.returncode == 0, "%s error:shard=%d: exits 0 with min_coverage 0.5 (%s)" % (
                    LV, S_ERR, p.stderr.strip()[-300:])):
                continue
            res, info = load(out, "result.json"), load(out, "run.json")
            cov, f = res["quality"]["coverage"], info["faults"]
            want = npasses * shard_rows[S_ERR]
            npieces = npasses * pieces_of(S_ERR)
            expect(res["partial"] is True, "%s error:shard=%d: partial" % (LV, S_ERR))
            expect(cov["rows_total"] == npasses * ROWS, "%s: rows_total %d == passes x rows" % (LV, cov["rows_total"]))
            expect(cov["rows_total"] - cov["rows_done"] == want,
                   "%s: rows left out %d == rows of shard %d in both passes %d" % (
                       LV, cov["rows_total"] - cov["rows_done"], S_ERR, want))
            expect(cov["shards_total"] == npasses * K and cov["shards_done"] == npasses * (K - 1),
                   "%s: shards_done %d of %d (one shard per pass out)" % (LV, cov["shards_done"], cov["shards_total"]))
            expect(f["rows_excluded"] == want and f["pieces_excluded"] == npieces,
                   "%s: run.json faults %s: rows %d, pieces %d" % (LV, f, want, npieces))
            attempts = 2 * M if moved else M
            expect(f["retries"] == (attempts - 1) * npieces,
                   "%s: retries %d == (%d attempts - 1) x %d pieces" % (LV, f["retries"], attempts, npieces))
            expect(f.get("pieces_moved") == (npieces if moved else 0),
                   "%s: pieces_moved %s == %d" % (LV, f.get("pieces_moved"), npieces if moved else 0))
            partial_bytes["error"][LV] = read_bytes(out)

        # (b) Corrupt rows: R rows of each piece of one shard left out.
        out = os.path.join(d, "corrupt")
        spec = "corrupt:shard=%d,rows=%d" % (S_COR, R_COR)
        p = shardflow(np_, out, base + ["--inject", spec, "--set", "fault.min_coverage=0.5"], what=L + " corrupt")
        if expect(p.returncode == 0, "%s %s: exits 0 (%s)" % (L, spec, p.stderr.strip()[-300:])):
            res, info = load(out, "result.json"), load(out, "run.json")
            cov, f = res["quality"]["coverage"], info["faults"]
            want = npasses * R_COR * pieces_of(S_COR)
            expect(res["partial"] is True, "%s %s: partial" % (L, spec))
            expect(f["rows_excluded"] == want and cov["rows_total"] - cov["rows_done"] == want,
                   "%s %s: rows excluded %d (run.json) / %d (coverage) == R x pieces x passes %d" % (
                       L, spec, f["rows_excluded"], cov["rows_total"] - cov["rows_done"], want))
            expect(f["pieces_excluded"] == 0 and f["retries"] == 0, "%s %s: no piece excluded or retried" % (L, spec))
            expect(cov["shards_done"] == npasses * (K - 1), "%s %s: shards_done %d" % (L, spec, cov["shards_done"]))
            partial_bytes["corrupt"][L] = read_bytes(out)

        # (c) min_coverage above the achieved share: exit 5 everywhere.
        share = 1.0 - shard_rows[S_ERR] / ROWS
        need = share + (1.0 - share) / 2
        out = os.path.join(d, "below")
        p = shardflow(np_, out, base + ["--inject", "error:shard=%d" % S_ERR, "--set", "fault.min_coverage=%.6f" % need],
                      what=L + " below min_coverage", rank_rc=True)
        codes = rank_codes(out, np_)
        expect(codes == [5] * np_, "%s min_coverage %.4f > share %.4f: every rank exits 5 (%s)" % (L, need, share, codes))
        msg = [l for l in p.stderr.splitlines() if "min_coverage" in l]
        expect(len(msg) == 1 and "shard %d" % S_ERR in msg[0],
               "%s: one message naming min_coverage and shard %d (%s)" % (L, S_ERR, msg))
        # "The first failure": the first excluded piece in (pass, round)
        # order, whatever rank happened to process it.
        r0 = min(r for r in range(len(per)) if per[r][S_ERR] > 0)
        first = "pass 0, shard %d, round %d," % (S_ERR, r0)
        expect(len(msg) == 1 and first in msg[0], "%s: the message names the first failure (%s)" % (L, first))
        expect(not os.path.exists(os.path.join(out, "result.json")), "%s: no result.json written" % L)

        # Everything excluded: still a result, rows_done 0.
        out = os.path.join(d, "all")
        p = shardflow(np_, out, base + ["--inject", "error:rate=1", "--set", "fault.min_coverage=0",
                                        "--set", "fault.max_attempts=2", "--set", "fault.backoff=1ms"],
                      what=L + " error:rate=1")
        if expect(p.returncode == 0, "%s error:rate=1, min_coverage 0: exits 0 (%s)" % (L, p.stderr.strip()[-300:])):
            res, info = load(out, "result.json"), load(out, "run.json")
            cov = res["quality"]["coverage"]
            expect(res["partial"] is True and cov["rows_done"] == 0 and cov["rows_total"] == npasses * ROWS,
                   "%s error:rate=1: partial, rows_done 0 of %d" % (L, cov["rows_total"]))
            expect(info["faults"]["pieces_excluded"] == npasses * all_pieces,
                   "%s error:rate=1: pieces excluded %d == all non-empty pieces %d" % (
                       L, info["faults"]["pieces_excluded"], npasses * all_pieces))

# Determinism of partial results and of the injection decisions.
for kind, by in partial_bytes.items():
    vals = list(by.values())
    expect(len(vals) >= len(NPS) * len(MODES) and all(v == vals[0] for v in vals),
           "%s partial result.json identical across %s" % (kind, sorted(by)))
    expect(bool(vals) and vals[0] != REF, "%s partial result differs from the complete one" % kind)
for spec, counts in retry_counts.items():
    expect(len(counts) == 1, "%s: same retries at every rank count and mode (%s)" % (spec, sorted(counts)))

# ---- a size-sharded workflow: shards and pieces in closed form ----
SMALL_ROWS, SK, SB = 300000, 8, 65536
small = os.path.join(tmp, "small.yaml")
with open(small, "w") as f:
    f.write("name: small\n"
            "input: {format: synthetic, generator: requests, rows: %d, seed: 7, batch_rows: %d}\n"
            "shard: {strategy: size, shards: %d}\n"
            "stages:\n"
            "  - name: s\n"
            "    agents:\n"
            "      - {agent: stats, id: latency, column: latency_ms, by: [service]}\n"
            "      - {agent: distinct, id: users, column: user_id, by: [service]}\n"
            "      - {agent: quantiles, id: latency_q, column: latency_ms, q: [0.5, 0.9, 0.99]}\n"
            % (SMALL_ROWS, SB, SK))


def block_start(s, n, k):
    # README: size sharding by row index, K contiguous blocks: shard s starts at ceil(s n / K).
    return -(-s * n // k)


def small_pieces(s):
    lo, hi = block_start(s, SMALL_ROWS, SK), block_start(s + 1, SMALL_ROWS, SK)
    out = []
    for r in range(-(-SMALL_ROWS // SB)):
        a, b = max(lo, r * SB), min(hi, (r + 1) * SB, SMALL_ROWS)
        if b > a:
            out.append(b - a)
    return out


SS = 1   # rows [37500, 75000): a piece of 28036 rows (two morsels) and one of 9464
sp = small_pieces(SS)
print("small workflow: shard %d pieces %s (morsel_rows %d)" % (SS, sp, MORSEL_ROWS))
small_partial = {}
for np_, mode in ((2, "static"), (3, "dynamic")):
    L = "small " + label(np_, mode)
    out = os.path.join(tmp, "small-persist-%d" % np_)
    p = shardflow(np_, out, [small, "--inject", "error:shard=%d" % SS, "--set", "fault.min_coverage=0.5"]
                  + cfg_args(mode), what=L)
    if expect(p.returncode == 0, "%s error:shard=%d: exits 0 (%s)" % (L, SS, p.stderr.strip()[-300:])):
        res, info = load(out, "result.json"), load(out, "run.json")
        cov, f = res["quality"]["coverage"], info["faults"]
        expect(info["input"]["batch_rows"] == SB, "%s: batch_rows %d as set" % (L, info["input"]["batch_rows"]))
        expect(cov["rows_total"] - cov["rows_done"] == sum(sp) and f["pieces_excluded"] == len(sp),
               "%s: rows left out %d == shard size %d, pieces %d == %d" % (
                   L, cov["rows_total"] - cov["rows_done"], sum(sp), f["pieces_excluded"], len(sp)))
        small_partial.setdefault("error", []).append(read_bytes(out))
    for R in (5,):
        out = os.path.join(tmp, "small-corrupt-%d" % np_)
        spec = "corrupt:shard=%d,rows=%d" % (SS, R)
        p = shardflow(np_, out, [small, "--inject", spec, "--set", "fault.min_coverage=0.5"] + cfg_args(mode),
                      what=L + " corrupt")
        if expect(p.returncode == 0, "%s %s: exits 0 (%s)" % (L, spec, p.stderr.strip()[-300:])):
            res, info = load(out, "result.json"), load(out, "run.json")
            cov, f = res["quality"]["coverage"], info["faults"]
            want = R * len(sp)
            # The contract (fault.h): R rows of each PIECE of the shard; a
            # piece of more than morsel_rows rows still loses only R.
            expect(f["rows_excluded"] == want and cov["rows_total"] - cov["rows_done"] == want,
                   "%s %s: rows excluded %d (run.json) / %d (coverage) == R x pieces %d (pieces %s)" % (
                       L, spec, f["rows_excluded"], cov["rows_total"] - cov["rows_done"], want, sp))
            small_partial.setdefault("corrupt", []).append(read_bytes(out))
for kind, vals in small_partial.items():
    expect(len(vals) == 2 and vals[0] == vals[1], "small %s partial result identical at np 2 static and np 3 dynamic" % kind)

if failures:
    print("%d failure(s); outputs kept in %s" % (len(failures), tmp))
    sys.exit(1)
shutil.rmtree(tmp)
print("all fault matrix checks passed")
