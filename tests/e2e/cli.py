#!/usr/bin/env python3
"""The command line as a user meets it: help, version, usage errors with exit
code 2, validate, gen (CSV and HDF5), run with --set and --out, and the
shape of result.json (no timings, hosts or rank counts in it).

usage: cli.py MPIEXEC SHARDFLOW SOURCE_DIR
"""
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile

MPIEXEC, BINARY, SRC = sys.argv[1], sys.argv[2], sys.argv[3]
# Every error case below ends with ranks that exit non-zero on their own,
# after agreeing on the error; mpirun then spends odls_base_sigkill_timeout
# (1 s, more than once) before it returns. 0 skips that wait; what mpirun
# kills is the same.
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_odls_base_sigkill_timeout="0")
failures = []


def sh(cmd, cwd=None):
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=cwd)


def expect(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


tmp = tempfile.mkdtemp(prefix="sf-cli-")

p = sh([BINARY, "--help"])
expect(p.returncode == 0 and "usage: shardflow run" in p.stdout, "--help prints usage, exit 0")
p = sh([BINARY, "--version"])
expect(p.returncode == 0 and p.stdout.startswith("shardflow "), "--version")
p = sh([MPIEXEC, "-np", "2", BINARY, "frobnicate"])
expect(p.returncode == 2 and p.stderr.count("unknown command frobnicate") == 1, "unknown command: exit 2, one message")
p = sh([MPIEXEC, "-np", "2", BINARY, "run"])
expect(p.returncode == 2 and "needs a workflow file" in p.stderr, "run without workflow: exit 2")
p = sh([MPIEXEC, "-np", "2", BINARY, "run", os.path.join(SRC, "inputs/demo.yaml"), "--bogus"])
expect(p.returncode == 2 and "unknown option --bogus" in p.stderr, "unknown option: exit 2")
p = sh([MPIEXEC, "-np", "1", BINARY, "run", os.path.join(tmp, "missing.yaml")])
expect(p.returncode == 3 and "missing.yaml" in p.stderr, "missing workflow file: exit 3 naming it")

p = sh([MPIEXEC, "-np", "2", BINARY, "validate", os.path.join(SRC, "inputs/demo.yaml")])
expect(p.returncode == 0 and "valid" in p.stdout, "validate demo.yaml")
p = sh([MPIEXEC, "-np", "2", BINARY, "validate", os.path.join(SRC, "inputs/demo.yaml"), "--set", "shard.strategy=zigzag"])
expect(p.returncode == 3 and "zigzag" in p.stderr, "validate with a bad --set value: exit 3")
p = sh([MPIEXEC, "-np", "2", BINARY, "validate", os.path.join(SRC, "inputs/demo.yaml"),
        "--set", "stages.0.aspects.0.agents.0.column=no_such_column"])
expect(p.returncode == 3 and "no_such_column" in p.stderr and "demo.yaml" in p.stderr,
       "unknown agent column caught before work, naming the file")

# gen: CSV with the documented columns and row count; HDF5 with one dataset per column.
data = os.path.join(tmp, "g.csv")
p = sh([BINARY, "gen", "--rows", "1234", "--seed", "3", "--format", "csv", "-o", data])
expect(p.returncode == 0, "gen csv")
with open(data, newline="") as f:
    rows = list(csv.reader(f))
expect(rows[0] == ["timestamp", "service", "endpoint", "region", "user_id", "client_ip", "status",
                   "latency_ms", "bytes", "revenue"], "gen csv header")
expect(len(rows) == 1235, f"gen csv has 1234 data rows (got {len(rows) - 1})")
p = sh([BINARY, "gen", "--rows", "10", "--format", "csv"])
expect(p.returncode == 2, "gen without -o: exit 2")
h5 = os.path.join(tmp, "g.h5")
p = sh([BINARY, "gen", "--rows", "1234", "--seed", "3", "--format", "hdf5", "-o", h5])
expect(p.returncode == 0, "gen hdf5")
if shutil.which("h5dump"):
    p = sh(["h5dump", "-H", h5])
    expect(p.returncode == 0 and all(f'DATASET "{c}"' in p.stdout for c in rows[0]) and "( 1234 )" in p.stdout,
           "h5dump shows one 1234-row dataset per column")

# run: --out, --set, the result.json shape and its determinism-related hygiene.
out = os.path.join(tmp, "out")
p = sh([MPIEXEC, "-np", "2", BINARY, "run", os.path.join(SRC, "inputs/demo.yaml"), "--out", out,
        "--set", "input.rows=600000", "--set", "shard.shards=7"])
expect(p.returncode == 0 and out in p.stdout, "run demo with --set prints where the results are")
with open(os.path.join(out, "result.json")) as f:
    text = f.read()
res = json.loads(text)
expect(res["workflow"] == "demo" and set(res["results"]) == {"analyze", "detect"}, "result.json stages")
lat = res["results"]["analyze"]["latency"]["groups"]
expect(sum(g["count"] + g["nulls"] for g in lat.values()) == 600000, "latency groups cover every row")
expect(list(lat) == sorted(lat), "groups in key order")
for word in ("seconds", "rank", "host", "thread"):
    expect(word not in text, f"result.json has no '{word}'")
with open(os.path.join(out, "run.json")) as f:
    info = json.load(f)
expect(info["ranks"] == 2 and info["shards"]["count"] == 7 and sum(info["shards"]["rows"]) == 600000,
       "run.json: ranks, shard count from --set, rows")
expect(len(info["config_hash"]) == 16, "run.json: config hash")
expect(info["shards"]["imbalance_rows"] >= 1.0, "run.json: imbalance")
for ps in info["timings"]["passes"]:
    rows0, secs0 = ps["agent_rows_rank0"], ps["agent_seconds_rank0"]
    expect(list(secs0) == list(rows0), "run.json: agent_seconds_rank0 names the agents of agent_rows_rank0")
    expect(all(secs0[k] > 0 for k in rows0 if rows0[k] > 0) and all(v >= 0 for v in secs0.values()),
           "run.json: an agent that had rows on rank 0 spent time there")
    expect(sum(secs0.values()) <= ps["seconds"] * info["threads"] + 0.01,
           "run.json: rank 0's agent seconds fit in its pass (%.4f of %.4f)" % (sum(secs0.values()), ps["seconds"]))
p = sh([MPIEXEC, "-np", "2", BINARY, "run", os.path.join(SRC, "inputs/demo.yaml"), "--out", out,
        "--set", "input.rows=600000"])
with open(os.path.join(out, "run.json")) as f:
    info2 = json.load(f)
expect(info2["config_hash"] != info["config_hash"], "config hash changes with the configuration")

# An output directory that cannot be created fails on every rank with one message.
blocker = os.path.join(tmp, "file")
open(blocker, "w").close()
p = sh([MPIEXEC, "-np", "2", BINARY, "run", os.path.join(SRC, "inputs/demo.yaml"), "--out", os.path.join(blocker, "x"),
        "--set", "input.rows=100", "--set", "input.incidents=false"])
expect(p.returncode == 1 and p.stderr.count("shardflow: error:") == 1, "unwritable --out: exit 1, one message")

print(f"{len(failures)} failures")
if not failures:
    shutil.rmtree(tmp, ignore_errors=True)  # kept for a look when something failed
sys.exit(1 if failures else 0)
