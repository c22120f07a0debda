#!/usr/bin/env python3
"""Every malformed CSV or workflow file in a corpus gives one clear error (the
expected text, printed once), a non-zero exit and no crash or hang, under
mpirun at the given rank count.

usage: bad_inputs.py MPIEXEC SHARDFLOW csv|yaml CORPUS_DIR NP
"""
import concurrent.futures
import csv
import os
import shutil
import subprocess
import sys
import tempfile

MPIEXEC, BINARY, KIND, CORPUS, NP = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
# Every error case below ends with ranks that exit non-zero on their own,
# after agreeing on the error; mpirun then spends odls_base_sigkill_timeout
# (1 s, more than once) before it returns. 0 skips that wait; what mpirun
# kills is the same.
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_odls_base_sigkill_timeout="0")
CRASH_WORDS = ("Segmentation", "core dumped", "MPI_ABORT", "AddressSanitizer", "runtime error:",
               "exited on signal", "Aborted")


def first_column(path):
    try:
        with open(path, newline="") as f:
            row = next(csv.reader(f))
            return row[0] if row and row[0].strip() else "id"
    except Exception:
        return "id"


def bad_column(expect, path):
    """The column a value error names (the workflow must use it: values are
    converted, and so checked, only in columns the workflow reads), else the
    first column."""
    if "column '" in expect:
        return expect.split("column '", 1)[1].split("'", 1)[0]
    return first_column(path)


def main():
    tmp = tempfile.mkdtemp(prefix=f"sf-bad-{KIND}-")
    failures = 0
    cases = 0
    with open(os.path.join(CORPUS, "EXPECT")) as f:
        lines = [l.rstrip("\n") for l in f if l.strip() and not l.startswith("#")]
    runs = []
    for line in lines:
        name, expect = line.split("\t", 1)
        path = os.path.join(CORPUS, name)
        if KIND == "csv":
            wf = os.path.join(tmp, name + ".yaml")
            with open(wf, "w") as w:
                w.write("name: bad\n"
                        f"input: {{format: csv, path: {os.path.abspath(path)}}}\n"
                        "stages:\n  - name: s\n    agents:\n"
                        f"      - {{agent: stats, column: {bad_column(expect, path)}}}\n")
        else:
            wf = path
        cmd = [MPIEXEC, "-np", NP, "--oversubscribe", BINARY, "run", wf, "--out", os.path.join(tmp, "out-" + name)]
        runs.append((name, expect, cmd))

    def run(cmd):
        try:
            return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, cwd=tmp)
        except subprocess.TimeoutExpired:
            return None

    # Two cases at a time (each its own --out): a case spends most of its
    # time in mpirun's start and end, not on a core.
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        procs = list(pool.map(run, [cmd for _, _, cmd in runs]))
    for (name, expect, cmd), p in zip(runs, procs):
        cases += 1
        if p is None:
            print(f"FAIL {name}: hung (no exit within 60 s)")
            failures += 1
            continue
        err = p.stdout + p.stderr
        problems = []
        if p.returncode == 0:
            problems.append("exit status 0")
        if p.returncode >= 128 or p.returncode < 0:
            problems.append(f"killed or crashed (status {p.returncode})")
        if expect not in err:
            problems.append(f"message lacks {expect!r}")
        elif err.count("shardflow: error:") != 1:
            problems.append(f"error printed {err.count('shardflow: error:')} times, want once")
        for word in CRASH_WORDS:
            if word in err:
                problems.append(f"output mentions {word!r}")
        if problems:
            failures += 1
            print(f"FAIL {name}: {'; '.join(problems)}\n  output: {err.strip()[:600]}")
        else:
            print(f"ok   {name}: exit {p.returncode}: {err.strip().splitlines()[0][:160]}")
    print(f"{cases - failures}/{cases} {KIND} cases handled at -np {NP}")
    if not failures:
        shutil.rmtree(tmp, ignore_errors=True)  # kept for a look when something failed
    sys.exit(1 if failures else 0)


main()
