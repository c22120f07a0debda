#!/usr/bin/env python3
"""result.json of the default workflow (every built-in agent, five aspects,
findings, synthesis) is byte-identical across rank counts 1..4, threads 1..2,
static and dynamic distribution, flat and hierarchical reduction (also with
simulated nodes of 1 and 2 ranks), and concurrent or sequential aspects.

usage: determinism_aspects.py MPIEXEC SHARDFLOW SOURCE_DIR
"""
import os
import shutil
import subprocess
import sys
import tempfile

MPIEXEC, BINARY, SRC = sys.argv[1], sys.argv[2], sys.argv[3]
ROWS = os.environ.get("SF_DETERMINISM_ROWS", "600000")
base_env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                OMPI_MCA_rmaps_base_oversubscribe="1")
tmp = tempfile.mkdtemp(prefix="sf-det-aspects-")
CONFIGS = [  # (ranks, threads, sets, extra environment)
    (1, 1, [], {}),
    (2, 1, [], {}),
    (3, 1, ["distribute.mode=static"], {}),
    (4, 1, ["distribute.mode=dynamic", "distribute.reduce=flat"], {}),
    (4, 1, ["distribute.reduce=hierarchical"], {"SF_RANKS_PER_NODE": "2"}),
    (3, 1, ["distribute.reduce=hierarchical"], {"SF_RANKS_PER_NODE": "1"}),
    (1, 2, ["distribute.aspects=sequential"], {}),
    (2, 2, ["distribute.aspects=concurrent", "distribute.morsel_rows=777"], {}),
]
ref = None
failed = False
for i, (np_, th, sets, extra) in enumerate(CONFIGS):
    out = os.path.join(tmp, "c%d" % i)
    cmd = [MPIEXEC, "-np", str(np_), "-x", "OMP_NUM_THREADS", BINARY, "run",
           os.path.join(SRC, "inputs", "demo.yaml"), "--out", out, "--set", "input.rows=" + ROWS]
    for s in sets:
        cmd += ["--set", s]
    env = dict(base_env, OMP_NUM_THREADS=str(th), **extra)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    what = "-np %d, %d threads, %s %s" % (np_, th, " ".join(sets), " ".join("%s=%s" % kv for kv in extra.items()))
    if p.returncode != 0:
        print("FAIL %s: exit %d\n%s" % (what, p.returncode, p.stderr))
        failed = True
        continue
    data = open(os.path.join(out, "result.json"), "rb").read()
    if ref is None:
        ref = data
        print("ok   reference: %s (%d bytes)" % (what, len(data)))
    elif data != ref:
        print("FAIL %s: result.json differs from the reference (kept in %s)" % (what, tmp))
        failed = True
    else:
        print("ok   %s: identical" % what)
if failed:
    sys.exit(1)
shutil.rmtree(tmp)
