#!/usr/bin/env python3
"""The stage result cache (cache.enabled): a pass whose configuration (its
stages and those before it), input and code are unchanged is reused, and
result.json is byte-identical to a run that computes everything; anything
else recomputes.

Every expected result is a run with the cache off, computed separately.

usage: result_cache.py MPIEXEC SHARDFLOW SOURCE_DIR
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

MPIEXEC, BINARY = sys.argv[1], sys.argv[2]
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")


def run(args, np_=2, expect=0):
    cmd = [MPIEXEC, "-np", str(np_), "--oversubscribe", "--bind-to", "none", BINARY] + args
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if p.returncode != expect:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def outputs(out):
    with open(os.path.join(out, "result.json"), "rb") as f:
        res = f.read()
    with open(os.path.join(out, "run.json")) as f:
        info = json.load(f)
    return res, info


def main():
    tmp = tempfile.mkdtemp(prefix="sf-cache-")
    data = os.path.join(tmp, "data.csv")
    subprocess.run([BINARY, "gen", "--rows", "40000", "--seed", "3", "--format", "csv", "-o", data], check=True,
                   env=env, capture_output=True)
    wf = os.path.join(tmp, "wf.yaml")
    cache = os.path.join(tmp, "cache")
    with open(wf, "w") as f:
        f.write(f"""name: cached
input: {{format: csv, path: {data}, batch_rows: 5000}}
shard: {{strategy: hash, key: user_id, shards: 8}}
cache: {{enabled: true, dir: {cache}}}
stages:
  - name: first
    agents:
      - {{agent: stats, id: latency, column: latency_ms, by: [service]}}
      - {{agent: quantiles, id: latency_q, column: latency_ms, by: [region]}}
  - name: second
    after: [first]
    agents:
      - {{agent: stats, id: bytes, column: bytes, by: [region]}}
""")
    n = [0]

    def case(sets, np_=2, threads=None):
        """Runs with the cache and without; returns (cached bytes, info, uncached bytes)."""
        n[0] += 1
        extra = ["--threads", str(threads)] if threads else []
        out = os.path.join(tmp, f"c{n[0]}")
        run(["run", wf, "--out", out] + sets + extra, np_)
        res, info = outputs(out)
        ref_out = os.path.join(tmp, f"r{n[0]}")
        run(["run", wf, "--out", ref_out, "--set", "cache.enabled=false"] + sets, np_)
        ref, ref_info = outputs(ref_out)
        if ref_info["cache"]["enabled"] or os.path.exists(os.path.join(ref_out, "cache")):
            sys.exit("FAIL: the cache was used although cache.enabled was false")
        if res != ref:
            sys.exit(f"FAIL: {sets}: result.json with the cache differs from a run without it")
        return info["cache"]

    def expect(c, reused, written, what):
        if c["passes_reused"] != reused or c["entries_written"] != written:
            sys.exit(f"FAIL: {what}: reused {c['passes_reused']}, wrote {c['entries_written']}; "
                     f"expected {reused} and {written}")
        print(f"ok: {what}: {reused} passes reused, {written} entries written")

    expect(case([]), 0, 2, "first run")
    expect(case([]), 2, 0, "same run again")
    expect(case([], np_=3, threads=2), 2, 0, "other ranks and threads (run-only keys)")
    expect(case(["--set", "distribute.mode=parallel-read"]), 2, 0, "other distribution mode")
    expect(case(["--set", "stages.1.agents.0.column=latency_ms"]), 1, 1, "second stage changed")
    expect(case(["--set", "stages.0.agents.0.by=[region]"]), 0, 2, "first stage changed")
    expect(case(["--set", "input.batch_rows=7000"]), 0, 2, "input configuration changed")
    expect(case([]), 2, 0, "original again (its entries are still there)")

    # The input changes (same size, one value differs): nothing is reused.
    with open(data, "r+b") as f:
        text = f.read()
        i = text.index(b",200,") + 1
        f.seek(i)
        f.write(b"201")
    expect(case([]), 0, 2, "input file changed")

    # A damaged entry is a miss, never a wrong result.
    for root, _, files in os.walk(cache):
        for name in files:
            if name == "checkpoint.h5":
                path = os.path.join(root, name)
                with open(path, "r+b") as f:
                    f.seek(os.path.getsize(path) // 2)
                    f.write(b"\xff" * 64)
    c = case([])
    if c["passes_reused"] == 2:
        sys.exit("FAIL: damaged cache entries were reused")
    print(f"ok: damaged entries: {c['passes_reused']} passes reused, results identical")
    shutil.rmtree(tmp, ignore_errors=True)


main()
