#!/usr/bin/env python3
"""on_bad_row: skip drops exactly the bad records, counts them in run.json,
and the statistics equal an exact reference over the good rows; with the
default (fail) the same file stops the run with the first bad line named.

usage: skip_bad_rows.py MPIEXEC SHARDFLOW SOURCE_DIR
"""
import json
import os
import shutil
import random
import subprocess
import sys
import tempfile
from fractions import Fraction

MPIEXEC, BINARY = sys.argv[1], sys.argv[2]
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
rng = random.Random(11)
tmp = tempfile.mkdtemp(prefix="sf-skip-")
path = os.path.join(tmp, "data.csv")
good, bad_lines = [], []
with open(path, "w") as f:
    f.write("id,grp,v\n")
    line = 1
    for i in range(6000):
        line += 1
        if i > 1500 and rng.random() < 0.002:
            kind = rng.choice(["few", "many", "num"])
            f.write({"few": f"{i},g1\n", "many": f"{i},g1,1.5,9\n", "num": f"{i},g2,abc\n"}[kind])
            bad_lines.append(line)
            continue
        v = round(rng.uniform(-50, 50), 3)
        g = rng.choice(["a", "b", "c"])
        good.append((g, v))
        f.write(f"{i},{g},{v!r}\n")

wf = os.path.join(tmp, "wf.yaml")
with open(wf, "w") as f:
    f.write(f"name: skip\ninput: {{format: csv, path: {path}, on_bad_row: skip, batch_rows: 1000}}\n"
            "shard: {strategy: hash, key: grp, shards: 5}\n"
            "stages:\n  - name: s\n    agents:\n      - {agent: stats, id: v, column: v, by: [grp]}\n")
failures = 0
for np_ in ("1", "3"):
    out = os.path.join(tmp, "out" + np_)
    p = subprocess.run([MPIEXEC, "-np", np_, "--oversubscribe", BINARY, "run", wf, "--out", out],
                       env=env, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        sys.exit(f"FAIL: skip run exited {p.returncode}: {p.stderr}")
    info = json.load(open(os.path.join(out, "run.json")))
    res = json.load(open(os.path.join(out, "result.json")))["results"]["s"]["v"]["groups"]
    if info["input"]["bad_rows"] != len(bad_lines):
        print(f"FAIL np {np_}: bad_rows {info['input']['bad_rows']} != {len(bad_lines)}")
        failures += 1
    lines = [b["line"] for b in info["input"]["bad_row_samples"]]
    if lines != bad_lines[:len(lines)] or not lines:
        print(f"FAIL np {np_}: bad row lines {lines} != {bad_lines[:len(lines)]}")
        failures += 1
    for g in "abc":
        vals = [v for gg, v in good if gg == g]
        want_sum = float(sum(Fraction(v) for v in vals))
        if res[g]["count"] != len(vals) or res[g]["sum"] != want_sum:
            print(f"FAIL np {np_}: group {g}: count {res[g]['count']} sum {res[g]['sum']} want {len(vals)} {want_sum}")
            failures += 1
# Default policy: fail at the first bad line, named in the one message.
with open(wf) as f:
    text = f.read().replace("on_bad_row: skip", "on_bad_row: fail")
with open(wf, "w") as f:
    f.write(text)
p = subprocess.run([MPIEXEC, "-np", "2", "--oversubscribe", BINARY, "run", wf, "--out", os.path.join(tmp, "o")],
                   env=env, capture_output=True, text=True, timeout=120)
if p.returncode != 4 or f"data.csv:{bad_lines[0]}:" not in p.stderr:
    print(f"FAIL: fail policy: exit {p.returncode}, stderr {p.stderr!r}, first bad line {bad_lines[0]}")
    failures += 1
print(f"{len(bad_lines)} bad rows; {failures} failures")
if not failures:
    shutil.rmtree(tmp, ignore_errors=True)  # kept for a look when something failed
sys.exit(1 if failures else 0)
