#!/usr/bin/env python3
"""The slurm/ batch scripts submitted to a real single-node Slurm (started by
harness.py for each case), their outputs compared with direct mpirun runs of
the same binary outside Slurm.

usage: slurm_jobs.py SHARDFLOW SOURCE_DIR CASE...
  run      run.sbatch: 2 tasks x 1 CPU and 1 task x 2 CPUs; result.json byte
           for byte equal to a direct run, run.json's ranks and threads equal
           to --ntasks and --cpus-per-task; the binary found through the
           submission directory's build/ and the default OUTDIR results/JOBID
  scaling  strong_scaling.sbatch and weak_scaling.sbatch with tiny inputs:
           one CSV row per configuration, in order, with the requested ranks,
           threads and rows, positive times; every run's result.json counts
           the requested rows and equals the direct run of the same input
  requeue  restartable.sbatch requeued from outside (scontrol requeue) once a
           checkpoint exists: the second run (SLURM_RESTART_COUNT=1) resumes
           from it and its result.json equals an uninterrupted direct run
  signal   restartable.sbatch sent SIGUSR1 the way --signal=B:USR1@N sends it
           (scancel --signal=USR1 --batch; a time-limit signal arrives only
           within Slurm's ~30 s time-limit check): checkpoint, exit 75,
           requeue by the script itself, identical result on the second run

Exit 77 (skip) when Slurm or munge is not installed or cannot run here.
"""
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SlurmCluster, SlurmError, SlurmUnavailable  # noqa: E402

SKIP = 77
EXIT_INTERRUPTED = 75   # SF_EXIT_INTERRUPTED: checkpoint written, run stopped early

BINARY, SRC = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
DEMO = os.path.join(SRC, "inputs", "demo.yaml")
SLURM_DIR = os.path.join(SRC, "slurm")
MPIRUN = shutil.which("mpirun")
failures = []

# Long enough that a checkpoint exists well before the end and that the
# signal or requeue sent a second after it still finds the run in a pass;
# --set checkpoint.every_seconds=1 makes them frequent. 8 million rows took
# 10 s on 2 idle cores when this was written, but 3 s on a faster VM later,
# where the SIGUSR1 of the signal case came after the last round (the run
# ended with 0 instead of stopping): 20 million rows.
LONG_ROWS = int(os.environ.get("SF_SLURM_LONG_ROWS", "20000000"))

# A small workflow without the demo's incidents (which need >= 600000 rows),
# so that scaling runs take well under a second each.
SMALL_YAML = """name: scaling
input: {format: synthetic, generator: requests, rows: 100000, seed: 7}
shard: {strategy: hash, key: user_id, shards: 16}
stages:
  - name: analyze
    agents:
      - {agent: stats, id: latency, column: latency_ms, by: [service]}
      - {agent: quantiles, id: latency_q, column: latency_ms, by: [service], q: [0.5, 0.99]}
"""


def expect(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


def base_env():
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    return env


def direct_run(np, workflow, out, args=()):
    """The reference: mpirun -np NP shardflow run outside Slurm."""
    cmd = [MPIRUN, "-np", str(np), "--bind-to", "none", BINARY, "run", workflow, "--out", out] + list(args)
    env = {k: v for k, v in base_env().items() if not k.startswith("SLURM_")}
    t = time.time()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise SlurmError(f"direct run failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout}{p.stderr}")
    print(f"     direct run: {' '.join(cmd[1:4])} ... {' '.join(args)} ({time.time() - t:.1f} s)", flush=True)
    return out


def read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def job_env(slurm, **extra):
    env = dict(slurm.env, SHARDFLOW=BINARY, **extra)
    for k in ("OMP_NUM_THREADS",):
        env.pop(k, None)
    return env


def show_output(path):
    text = (read_bytes(path) or b"(no output file)").decode(errors="replace")
    print(f"----- {path} -----\n{text[-6000:]}----- end -----", flush=True)
    return text


def counted_rows(result):
    """Rows seen by the stats agent: the sum over its groups of count + nulls
    (every row falls in exactly one service group)."""
    groups = result["results"]["analyze"]["latency"]["groups"]
    return sum(g["count"] + g["nulls"] for g in groups.values())


# ----------------------------------------------------------------------------
def case_run(slurm, tmp):
    ref = direct_run(2, DEMO, os.path.join(tmp, "direct"))
    ref_bytes = read_bytes(os.path.join(ref, "result.json"))
    for ntasks, cpus in ((2, 1), (1, 2)):
        out = os.path.join(tmp, f"job-{ntasks}x{cpus}")
        log = os.path.join(tmp, f"run-{ntasks}x{cpus}.out")
        job = slurm.sbatch([f"--ntasks={ntasks}", f"--cpus-per-task={cpus}", f"--output={log}",
                            os.path.join(SLURM_DIR, "run.sbatch"), "inputs/demo.yaml", out],
                           cwd=SRC, env=job_env(slurm))
        info = slurm.wait(job, timeout=120)
        text = show_output(log)
        what = f"run.sbatch --ntasks={ntasks} --cpus-per-task={cpus}"
        expect(info.get("JobState") == "COMPLETED" and slurm.exit_code(info) == (0, 0),
               f"{what}: job COMPLETED with exit 0 (got {info.get('JobState')} {info.get('ExitCode')})")
        expect(info.get("NumTasks") == str(ntasks) and info.get("CPUs/Task") == str(cpus),
               f"{what}: Slurm allocated {ntasks} tasks x {cpus} CPUs "
               f"(got {info.get('NumTasks')} x {info.get('CPUs/Task')})")
        got = read_bytes(os.path.join(out, "result.json"))
        expect(got is not None and got == ref_bytes,
               f"{what}: result.json byte for byte equal to the direct mpirun -np 2 run")
        rj = read_json(os.path.join(out, "run.json")) or {}
        expect(rj.get("ranks") == ntasks, f"{what}: run.json ranks == {ntasks} (got {rj.get('ranks')})")
        expect(rj.get("threads") == cpus, f"{what}: run.json threads == {cpus} (got {rj.get('threads')})")
        expect(f"results in {out}/result.json" in text, f"{what}: the log says where the results went")

    # The binary found through the submission directory's build/, the
    # workflow relative to it, and the default OUTDIR results/JOBID there.
    repo = os.path.join(tmp, "repo")
    os.makedirs(os.path.join(repo, "build", "ci", "bin"))
    os.makedirs(os.path.join(repo, "inputs"))
    os.symlink(BINARY, os.path.join(repo, "build", "ci", "bin", "shardflow"))
    shutil.copy(DEMO, os.path.join(repo, "inputs", "demo.yaml"))
    env = job_env(slurm)
    del env["SHARDFLOW"]
    env["PATH"] = os.pathsep.join(d for d in env.get("PATH", "").split(os.pathsep)
                                  if not os.path.exists(os.path.join(d, "shardflow")))
    log = os.path.join(tmp, "run-default.out")
    job = slurm.sbatch([f"--output={log}", os.path.join(SLURM_DIR, "run.sbatch"), "inputs/demo.yaml"],
                       cwd=repo, env=env)
    info = slurm.wait(job, timeout=120)
    text = show_output(log)
    out = os.path.join(repo, "results", job)
    expect(info.get("JobState") == "COMPLETED" and os.path.join(repo, "build", "ci", "bin", "shardflow") in text,
           "run.sbatch without SHARDFLOW or PATH: uses SLURM_SUBMIT_DIR/build/ci/bin/shardflow")
    expect(read_bytes(os.path.join(out, "result.json")) == ref_bytes,
           "run.sbatch default OUTDIR results/JOBID in the submission directory, same result.json")


# ----------------------------------------------------------------------------
def read_csv(path):
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except OSError:
        return None


def check_scaling_rows(kind, rows, configs, out, cpus, ref_bytes, ref_rows):
    expect(rows is not None and len(rows) == len(configs),
           f"{kind}: one CSV row per configuration ({len(configs)}; got {None if rows is None else len(rows)})")
    if not rows:
        return
    for row, (ranks, threads, nrows) in zip(rows, configs):
        tag = f"{kind} {ranks}x{threads}"
        expect((int(row["tasks"]), int(row["threads"]), int(row["rows"])) == (ranks, threads, nrows),
               f"{tag}: CSV tasks,threads,rows == {ranks},{threads},{nrows} (got {row['tasks']},"
               f"{row['threads']},{row['rows']})")
        secs, rps, wall = float(row["seconds"]), float(row["rows_per_second"]), float(row["wall_seconds"])
        expect(0 < secs < wall, f"{tag}: 0 < seconds ({secs}) < wall_seconds ({wall})")
        expect(abs(rps - nrows / secs) <= 1e-3 * rps + 0.1, f"{tag}: rows_per_second == rows / seconds")
        expect(int(row["oversubscribed"]) == int(ranks * threads > cpus),
               f"{tag}: oversubscribed == {int(ranks * threads > cpus)}")
        # The run column names the run's directory (runs/RANKSxTHREADS-1, or
        # with the mode in the name where the job chose one).
        run = os.path.join(out, row.get("run") or f"runs/{ranks}x{threads}-1")
        expect(os.path.dirname(os.path.normpath(run)) == os.path.join(out, "runs"),
               f"{tag}: the run column names a directory in OUTDIR/runs (got {row.get('run')})")
        result = read_json(os.path.join(run, "result.json"))
        expect(result is not None and counted_rows(result) == nrows,
               f"{tag}: result.json counts {nrows} rows (got {None if result is None else counted_rows(result)})")
        if nrows == ref_rows:
            got = read_bytes(os.path.join(run, "result.json"))
            expect(got == ref_bytes, f"{tag}: result.json equal to the direct mpirun -np 2 run")


def case_scaling(slurm, tmp):
    wf = os.path.join(tmp, "small.yaml")
    with open(wf, "w") as f:
        f.write(SMALL_YAML)
    rows, per_rank = 100000, 50000
    ref = direct_run(2, wf, os.path.join(tmp, "direct"), ["--set", f"input.rows={rows}"])
    ref_bytes = read_bytes(os.path.join(ref, "result.json"))
    cpus = 2
    strong_cfg = [(1, 1), (2, 1), (4, 1), (8, 1), (1, 2), (2, 2)]
    weak_tasks = [1, 2, 4, 8]
    jobs = {}
    jobs["strong"] = slurm.sbatch(
        ["--ntasks=2", f"--output={tmp}/strong.out", os.path.join(SLURM_DIR, "strong_scaling.sbatch"),
         wf, os.path.join(tmp, "strong")], cwd=tmp,
        env=job_env(slurm, SF_ROWS=str(rows), SF_CONFIGS=" ".join(f"{r}x{t}" for r, t in strong_cfg)))
    jobs["weak"] = slurm.sbatch(
        ["--ntasks=2", f"--output={tmp}/weak.out", os.path.join(SLURM_DIR, "weak_scaling.sbatch"),
         wf, os.path.join(tmp, "weak")], cwd=tmp,
        env=job_env(slurm, SF_ROWS_PER_RANK=str(per_rank), SF_TASKS=" ".join(map(str, weak_tasks))))
    for kind, job in jobs.items():
        info = slurm.wait(job, timeout=150)
        show_output(f"{tmp}/{kind}.out")
        expect(info.get("JobState") == "COMPLETED" and slurm.exit_code(info) == (0, 0),
               f"{kind}_scaling.sbatch: job COMPLETED with exit 0 (got {info.get('JobState')} {info.get('ExitCode')})")
    check_scaling_rows("strong", read_csv(os.path.join(tmp, "strong", "strong.csv")),
                       [(r, t, rows) for r, t in strong_cfg], os.path.join(tmp, "strong"), cpus, ref_bytes, rows)
    check_scaling_rows("weak", read_csv(os.path.join(tmp, "weak", "weak.csv")),
                       [(n, 1, per_rank * n) for n in weak_tasks], os.path.join(tmp, "weak"), cpus, ref_bytes, rows)


# ----------------------------------------------------------------------------
LONG_SETS = ["--set", f"input.rows={LONG_ROWS}", "--set", "checkpoint.every_seconds=1"]


def submit_restartable(slurm, tmp, out, log, extra_sbatch=()):
    return slurm.sbatch(["--ntasks=2", f"--output={log}"] + list(extra_sbatch) +
                        [os.path.join(SLURM_DIR, "restartable.sbatch"), "inputs/demo.yaml", out] + LONG_SETS,
                        cwd=SRC, env=job_env(slurm))


def wait_for_checkpoint(slurm, job, out, log, timeout=90):
    """Waits until OUTDIR/checkpoint/checkpoint.h5 exists while the job runs."""
    ckpt = os.path.join(out, "checkpoint", "checkpoint.h5")
    end = time.time() + timeout
    while time.time() < end:
        info = slurm.job(job)
        if os.path.exists(ckpt) and info.get("JobState") == "RUNNING":
            # A moment more, so the ranks are past their first checkpoint write.
            time.sleep(1.0)
            return True
        if info.get("JobState") not in ("PENDING", "RUNNING", "CONFIGURING", None):
            text = show_output(log)
            hint = ""
            if "unknown option --restart" in text:
                hint = " (this shardflow has no --restart yet)"
            elif not os.path.exists(ckpt):
                hint = f" (no {ckpt}: are checkpoints written? checkpoint.every_seconds=1 was set)"
            expect(False, f"job {job} ended ({info.get('JobState')} {info.get('ExitCode')}) before a checkpoint "
                          f"appeared{hint}")
            return False
        time.sleep(0.2)
    show_output(log)
    expect(False, f"no {ckpt} after {timeout} s")
    return False


def check_resumed(what, slurm, job, out, log, ref_bytes):
    info = slurm.wait(job, timeout=150, restarts=1)
    text = show_output(log)
    expect(info.get("JobState") == "COMPLETED" and slurm.exit_code(info) == (0, 0),
           f"{what}: job COMPLETED with exit 0 after the requeue (got {info.get('JobState')} {info.get('ExitCode')})")
    expect(info.get("Restarts") == "1", f"{what}: Slurm counts one restart (Restarts={info.get('Restarts')})")
    expect("SLURM_RESTART_COUNT=0" in text and "SLURM_RESTART_COUNT=1" in text,
           f"{what}: the log shows the first run and the second (SLURM_RESTART_COUNT=1)")
    rj = read_json(os.path.join(out, "run.json")) or {}
    restart = rj.get("restart")
    if expect(isinstance(restart, dict), f"{what}: run.json has a \"restart\" object (got {restart!r})"):
        expect(restart.get("resumed") is True,
               f"{what}: run.json restart.resumed == true (got {restart.get('resumed')!r})")
    got = read_bytes(os.path.join(out, "result.json"))
    expect(got is not None and got == ref_bytes,
           f"{what}: result.json byte for byte equal to an uninterrupted direct run")
    return text


def case_requeue(slurm, tmp):
    out, log = os.path.join(tmp, "job"), os.path.join(tmp, "requeue.out")
    job = submit_restartable(slurm, tmp, out, log)
    if wait_for_checkpoint(slurm, job, out, log):
        slurm.cmd(["scontrol", "requeue", job])
        print(f"     scontrol requeue {job}", flush=True)
        ref = direct_run(2, DEMO, os.path.join(tmp, "direct"), LONG_SETS[:2])
        text = check_resumed("scontrol requeue", slurm, job, out, log,
                             read_bytes(os.path.join(ref, "result.json")))
        expect("requeued job" not in text,
               "scontrol requeue: the script did not requeue the job a second time itself")


def case_signal(slurm, tmp):
    out, log = os.path.join(tmp, "job"), os.path.join(tmp, "signal.out")
    job = submit_restartable(slurm, tmp, out, log)
    if wait_for_checkpoint(slurm, job, out, log):
        # What --signal=B:USR1@N does at the time limit: SIGUSR1 to the batch
        # shell only.
        slurm.cmd(["scancel", "--signal=USR1", "--batch", job])
        print(f"     scancel --signal=USR1 --batch {job}", flush=True)
        ref = direct_run(2, DEMO, os.path.join(tmp, "direct"), LONG_SETS[:2])
        text = check_resumed("SIGUSR1", slurm, job, out, log, read_bytes(os.path.join(ref, "result.json")))
        expect("SIGUSR1: asking the ranks" in text and f"shardflow exited with {EXIT_INTERRUPTED}" in text,
               f"SIGUSR1: forwarded to mpirun, shardflow exited with {EXIT_INTERRUPTED}")
        expect(f"requeued job {job}" in text, "SIGUSR1: the script requeued its own job")


CASES = {"run": case_run, "scaling": case_scaling, "requeue": case_requeue, "signal": case_signal}


def main():
    names = sys.argv[3:] or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown or len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    if not MPIRUN:
        print("SKIP: no mpirun on PATH", flush=True)
        return SKIP
    for name in names:
        tmp = tempfile.mkdtemp(prefix=f"sf-slurm-{name}-")
        os.chmod(tmp, 0o755)
        before = len(failures)
        t = time.time()
        try:
            with SlurmCluster(cpus=max(2, os.cpu_count() or 1)) as slurm:
                try:
                    CASES[name](slurm, tmp)
                except SlurmError as e:
                    expect(False, f"{name}: {e}")
                if len(failures) > before:
                    slurm.failed = True   # print the daemons' logs
        except SlurmUnavailable as e:
            print(f"SKIP: {e}", flush=True)
            shutil.rmtree(tmp, ignore_errors=True)
            return SKIP
        except SlurmError as e:
            expect(False, f"{name}: the test cluster: {e}")
        print(f"---- {name}: {time.time() - t:.1f} s", flush=True)
        if len(failures) == before:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"     kept {tmp}", flush=True)
    if failures:
        print(f"{len(failures)} failure(s)")
        for f in failures:
            print("  " + f)
        return 1
    print("all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
