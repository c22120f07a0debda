#!/usr/bin/env python3
"""The dynamic-mode watchdog: a worker whose agent hangs for good (an
injected hang with no task timeout) stops sending anything; rank 0 notices
after fault.watchdog seconds, prints one message naming the rank and ends
the job with exit code 76 instead of hanging until the time limit; the run
restarted from its checkpoint (without the fault) ends with the bytes of an
uninterrupted run. Also: without the watchdog the same hang is caught by
fault.task_timeout and retried, with the exact result.
usage: watchdog.py MPIEXEC SHARDFLOW SOURCE_DIR
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

MPIEXEC, BINARY, SRC = sys.argv[1], sys.argv[2], sys.argv[3]
WF = os.path.join(SRC, "inputs", "demo.yaml")
BASE = ["--set", "input.rows=600000", "--set", "distribute.mode=dynamic"]
# When rank 0 ends the job (exit 76), mpirun kills the hung worker; it waits
# odls_base_sigkill_timeout (1 s, more than once) before it does. 0 skips
# the wait; the worker is killed all the same.
ENV = dict(os.environ, OMPI_MCA_odls_base_sigkill_timeout="0")
tmp = tempfile.mkdtemp(prefix="sf-watchdog-")
failures = 0


def run(out, *extra, np_=2, timeout=120):
    cmd = [MPIEXEC, "-np", str(np_), "--oversubscribe", "--bind-to", "none", BINARY, "run", WF, "--out", out,
           *BASE, *extra]
    t0 = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, start_new_session=True, env=ENV)
    except subprocess.TimeoutExpired:
        return None, time.time() - t0
    return p, time.time() - t0


def check(ok, what):
    global failures
    print(("ok   " if ok else "FAIL ") + what)
    failures += not ok


def read(path):
    with open(path, "rb") as f:
        return f.read()


ref_dir = os.path.join(tmp, "ref")
p, _ = run(ref_dir)
check(p is not None and p.returncode == 0, "uninterrupted reference run")
ref = read(os.path.join(ref_dir, "result.json"))

for np_ in (2, 3):
    out = os.path.join(tmp, f"hang{np_}")
    # Rank 1's agent hangs in shard 3's first morsel; no task timeout.
    p, secs = run(out, "--inject", "hang:shard=3,rank=1", "--set", "fault.watchdog=2s", "--set",
                  "checkpoint.every_shards=64", np_=np_, timeout=90)
    check(p is not None, f"np={np_}: the hung job ended (after {secs:.1f} s), not hung")
    if p is None:
        continue
    check(p.returncode == 76, f"np={np_}: exit code {p.returncode}, expected 76")
    check("rank 1 made no progress" in p.stderr and "fault.watchdog" in p.stderr,
          f"np={np_}: the message names the rank and the key")
    check(p.stderr.count("shardflow: error:") == 1, f"np={np_}: one message")
    # Restart without the fault: resumes (or starts afresh) to the same bytes.
    p2, _ = run(out, "--restart", np_=np_)
    check(p2 is not None and p2.returncode == 0, f"np={np_}: restart succeeded")
    if p2 is not None and p2.returncode == 0:
        check(read(os.path.join(out, "result.json")) == ref, f"np={np_}: restarted result equals the reference")

# The same hang with a task timeout instead: retried, exact.
out = os.path.join(tmp, "timeout")
p, _ = run(out, "--inject", "hang:shard=3,rank=1,attempts=1", "--set", "fault.task_timeout=1s")
check(p is not None and p.returncode == 0, "hang with task_timeout: the run succeeds")
if p is not None and p.returncode == 0:
    check(read(os.path.join(out, "result.json")) == ref, "hang with task_timeout: exact result")

print("watchdog: " + ("all checks passed" if not failures else f"{failures} checks failed"))
if not failures:
    shutil.rmtree(tmp, ignore_errors=True)
sys.exit(1 if failures else 0)
