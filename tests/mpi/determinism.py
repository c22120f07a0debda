#!/usr/bin/env python3
"""result.json is byte-identical across rank counts, thread counts, static,
dynamic and parallel-read distribution (with and without the exchange of
records; and input formats), and equal to a sequential reference
computed here independently from the CSV text with exact rational arithmetic.

usage: determinism.py MPIEXEC SHARDFLOW STRATEGY [--formats]
"""
import csv
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from fractions import Fraction

MPIEXEC, BINARY, STRATEGY = sys.argv[1], sys.argv[2], sys.argv[3]
FORMATS = "--formats" in sys.argv[4:]
ROWS, SEED = 30000, 7
KEYS = {"size": None, "hash": "user_id", "range": "timestamp", "semantic": "endpoint"}

AGENTS = [  # (stage, id, column, by)
    ("profile", "latency", "latency_ms", ["service"]),
    ("profile", "bytes", "bytes", []),
    ("profile", "user_by_endpoint", "user_id", ["endpoint"]),
    ("money", "revenue", "revenue", ["region", "status"]),
    ("money", "latency_by_status", "latency_ms", ["status"]),
]

env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")


def run(cmd, **kw):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, **kw)
    if p.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def workflow(path, input_yaml):
    key = KEYS[STRATEGY]
    shard = f"{{strategy: {STRATEGY}, shards: 13" + (f", key: {key}" if key else "") + "}"
    lines = [
        "name: determinism",
        f"input: {input_yaml}",
        f"shard: {shard}",
        "distribute: {mode: static, memory_budget: 1MiB, morsel_rows: 1000}",
        "stages:",
    ]
    for stage in ("profile", "money"):
        lines.append(f"  - name: {stage}")
        if stage == "money":
            lines.append("    after: [profile]")
        lines.append("    agents:")
        for st, aid, col, by in AGENTS:
            if st == stage:
                lines.append(f"      - {{agent: stats, id: {aid}, column: {col}, by: [{', '.join(by)}]}}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def reference(csv_path):
    """Exact per-group statistics from the CSV text."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    results = {}
    for stage, aid, col, by in AGENTS:
        groups = {}
        for r in rows:
            key = "|".join(r[b] for b in by)
            g = groups.setdefault(key, {"n": 0, "nulls": 0, "s": Fraction(0), "q": Fraction(0),
                                        "min": None, "max": None})
            text = r[col]
            if text == "":
                g["nulls"] += 1
                continue
            x = float(text)
            fx = Fraction(x)
            g["n"] += 1
            g["s"] += fx
            g["q"] += fx * fx
            g["min"] = x if g["min"] is None else min(g["min"], x)
            g["max"] = x if g["max"] is None else max(g["max"], x)
        out = {}
        for key, g in groups.items():
            n = g["n"]
            e = {"count": n, "nulls": g["nulls"], "sum": float(g["s"]),
                 "mean": float(g["s"] / n) if n else None,
                 "variance": float((g["q"] - g["s"] * g["s"] / n) / (n - 1)) if n > 1 else None,
                 "min": g["min"], "max": g["max"]}
            e["stddev"] = math.sqrt(e["variance"]) if e["variance"] is not None else None
            out[key] = e
        results.setdefault(stage, {})[aid] = out if by else out[""]
    return results


def close(a, b, rel):
    if a is None or b is None:
        return a is None and b is None
    return a == b or abs(a - b) <= rel * max(abs(a), abs(b))


def compare(ref, got):
    bad = 0
    for stage, agents in ref.items():
        for aid, want in agents.items():
            res = got["results"][stage][aid]
            by = [a for a in AGENTS if a[1] == aid][0][3]
            pairs = [(k, want[k], res["groups"].get(k)) for k in want] if by else [("", want, res)]
            if by and set(res["groups"]) != set(want):
                print(f"FAIL {stage}.{aid}: groups differ")
                bad += 1
            for key, w, g in pairs:
                if g is None:
                    continue
                for field in ("count", "nulls", "sum", "min", "max"):
                    if w[field] != g[field]:
                        print(f"FAIL {stage}.{aid}[{key}].{field}: want {w[field]!r} got {g[field]!r}")
                        bad += 1
                for field, rel in (("mean", 4e-16), ("variance", 1e-14), ("stddev", 1e-14)):
                    if not close(w[field], g[field], rel):
                        print(f"FAIL {stage}.{aid}[{key}].{field}: want {w[field]!r} got {g[field]!r}")
                        bad += 1
    return bad


def main():
    tmp = tempfile.mkdtemp(prefix="sf-det-")
    data = os.path.join(tmp, "data.csv")
    run([BINARY, "gen", "--rows", str(ROWS), "--seed", str(SEED), "--format", "csv", "-o", data])
    wf = os.path.join(tmp, "wf.yaml")
    workflow(wf, f"{{format: csv, path: {data}, batch_rows: 4096}}")
    outputs = {}
    modes = ["static", "dynamic", "parallel-read"]
    if STRATEGY != "size":
        modes.append("parallel-read-noexchange")
    for np_, threads, mode in itertools.product((1, 2, 3, 4), (1, 2), modes):
        if mode == "parallel-read-noexchange" and threads == 2:
            continue
        out = os.path.join(tmp, f"out-{np_}-{threads}-{mode}")
        # Dynamic and parallel-read runs also split every message (and every
        # all-to-all) into chunks of 777 bytes.
        chunk = ["--set", "distribute.chunk_bytes=777"] if mode != "static" else []
        if mode == "parallel-read-noexchange":
            chunk += ["--set", "distribute.exchange=never"]
            mode_set = "parallel-read"
        else:
            mode_set = mode
        run([MPIEXEC, "-np", str(np_), "--oversubscribe", "--bind-to", "none", "-x", f"OMP_NUM_THREADS={threads}",
             BINARY, "run", wf, "--out", out, "--set", f"distribute.mode={mode_set}"] + chunk)
        with open(os.path.join(out, "result.json"), "rb") as f:
            outputs[(np_, threads, mode)] = f.read()
        with open(os.path.join(out, "run.json")) as f:
            info = json.load(f)
        assert info["ranks"] == np_ and info["threads"] == threads, info
        if mode_set == "parallel-read":
            # Every rank reads its part as one sub-part per thread.
            parts = [r.get("read_parts") for r in info["per_rank"]]
            if parts != [threads] * np_:
                sys.exit(f"FAIL: -np {np_} x {threads} parallel-read: ranks read {parts} sub-parts")
        rows = sum(info["shards"]["rows"])
        if rows != ROWS:
            sys.exit(f"FAIL: shards hold {rows} rows, input has {ROWS}")
    base = outputs[(1, 1, "static")]
    differ = [k for k, v in outputs.items() if v != base]
    if differ:
        sys.exit(f"FAIL: result.json differs from -np 1 x 1 thread static for {differ}")
    print(f"{STRATEGY}: {len(outputs)} runs byte-identical")
    bad = compare(reference(data), json.loads(base))
    if bad:
        sys.exit(f"FAIL: {bad} values differ from the exact reference")
    print(f"{STRATEGY}: equal to the exact sequential reference")
    if FORMATS:
        h5 = os.path.join(tmp, "data.h5")
        run([BINARY, "gen", "--rows", str(ROWS), "--seed", str(SEED), "--format", "hdf5", "-o", h5])
        for name, spec in (("hdf5", f"{{format: hdf5, path: {h5}, group: /table, batch_rows: 5000}}"),
                           ("synthetic", f"{{format: synthetic, generator: requests, rows: {ROWS}, seed: {SEED}, batch_rows: 3000}}")):
            wf2 = os.path.join(tmp, f"wf-{name}.yaml")
            workflow(wf2, spec)
            for np_, mode in ((1, "dynamic"), (3, "dynamic"), (3, "parallel-read"), (4, "parallel-read")):
                out = os.path.join(tmp, f"out-{name}-{np_}-{mode}")
                run([MPIEXEC, "-np", str(np_), "--oversubscribe", "--bind-to", "none", BINARY, "run", wf2,
                     "--out", out, "--set", f"distribute.mode={mode}"])
                with open(os.path.join(out, "result.json"), "rb") as f:
                    if f.read() != base:
                        sys.exit(f"FAIL: {name} input at -np {np_} gives a different result.json than CSV")
        print(f"{STRATEGY}: CSV, HDF5 and synthetic inputs give the same result.json")
    shutil.rmtree(tmp, ignore_errors=True)  # kept for a look when something failed


main()
