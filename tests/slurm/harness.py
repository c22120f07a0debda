#!/usr/bin/env python3
"""A throw-away single-node Slurm cluster on loopback, for tests.

    with SlurmCluster() as slurm:
        job = slurm.sbatch(["--ntasks=2", "slurm/run.sbatch", "inputs/demo.yaml"], cwd=src)
        info = slurm.wait(job, timeout=120)

Everything the daemons write (slurm.conf, state, spool, pid files, logs) lives
in a fresh temporary directory, named to clients and daemons through
SLURM_CONF, and the controller and node daemon listen on free ports, so the
cluster neither reads nor changes /etc/slurm and a leftover or a second
cluster does not collide with it. munged is shared with the system: it is
started (in the foreground, as the munge user) only when no munged answers,
and then stopped on exit. Only processes this harness started are stopped,
by their pids: the daemons, and the job processes that carry this cluster's
SLURM_CONF in their environment. stop() runs on normal exit, on an exception
in the with-block, on SIGTERM or SIGHUP and, as a last resort, from atexit;
what a harness killed outright leaves behind (daemons, job processes) the
next harness kills when it starts.

Run it alone to try it: `python3 tests/slurm/harness.py` starts a cluster,
prints sinfo and the environment to use it, and stops on Enter.

SlurmUnavailable is raised when Slurm or munge is not installed or cannot
run here (not root); tests turn it into a skip.
"""
import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

TERMINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
                   "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


class SlurmUnavailable(Exception):
    """Slurm cannot be started here; the reason says why (a test skips)."""


class SlurmError(Exception):
    """The cluster did not come up or a command failed (a test fails)."""


def _free_port():
    # Port 0 lets the kernel choose a free port; it is released at once and
    # given to the daemon. A race with another process is possible but rare.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read(path, limit=200000):
    try:
        with open(path, errors="replace") as f:
            text = f.read()
        return text[-limit:]
    except OSError as e:
        return f"({path}: {e.strerror})"


TMP_PREFIX = "sf-slurm-"


def _exit_on_signal(sig, frame):
    raise SystemExit(128 + sig)


def _environ_conf(pid):
    """The SLURM_CONF in a process's environment, or None."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read().split(b"\0")
    except OSError:
        return None
    for kv in env:
        if kv.startswith(b"SLURM_CONF="):
            return kv[len(b"SLURM_CONF="):].decode(errors="replace")
    return None


def _pid_alive(pidfile):
    try:
        with open(pidfile) as f:
            os.kill(int(f.read().strip()), 0)
        return True
    except (OSError, ValueError):
        return False


def _reap_orphans(log):
    """Kills, by pid, what a harness that was itself killed (SIGKILL, a test
    timeout) could not stop: the daemons and job processes whose SLURM_CONF
    names a harness configuration whose owner (the process that started the
    harness, in owner.pid beside it) is gone. Processes of a live harness,
    and of any other Slurm, are not touched."""
    tmpdir = tempfile.gettempdir()
    dead = {}
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        conf = _environ_conf(d)
        if not conf or os.path.dirname(os.path.dirname(conf)) != tmpdir or \
                not os.path.basename(os.path.dirname(conf)).startswith(TMP_PREFIX):
            continue
        if conf not in dead:
            base = os.path.dirname(conf)
            dead[conf] = not _pid_alive(os.path.join(base, "owner.pid"))
        if dead[conf]:
            try:
                os.kill(int(d), signal.SIGKILL)
                log(f"killed pid {d}, left over from the test cluster of {conf}")
            except OSError:
                pass


def parse_show(text):
    """Parses `scontrol show -o` output (Key=Value pairs on one line; values
    may contain spaces, so a value runs until the next ' Key=')."""
    out = {}
    for m in re.finditer(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/]*)=(.*?)(?=\s[A-Za-z][A-Za-z0-9_:/]*=|$)",
                         text.strip()):
        out.setdefault(m.group(1), m.group(2))
    return out


class SlurmCluster:
    """One slurmctld and one slurmd on 127.0.0.1 with one partition."""

    def __init__(self, cpus=None, keep=None, verbose=True):
        self.cpus = cpus or os.cpu_count() or 1
        # SF_SLURM_KEEP=1 keeps the temporary directory for a post-mortem.
        self.keep = keep if keep is not None else os.environ.get("SF_SLURM_KEEP") == "1"
        self.verbose = verbose
        self.tmp = None
        self.env = None
        self.node = None
        self.partition = "sf"
        self._procs = {}        # name -> Popen of the daemons this harness started
        self._logs = {}         # name -> log file path
        self._stopped = True
        self.failed = False

    # -- context manager -------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.failed = True
        self.stop()
        return False

    def log(self, msg):
        if self.verbose:
            print(f"[slurm] {msg}", flush=True)

    # -- start -----------------------------------------------------------
    def _check_available(self):
        if os.geteuid() != 0:
            raise SlurmUnavailable("the single-node Slurm test cluster needs root (slurmd runs jobs as their user)")
        missing = [p for p in ("slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "sinfo", "scancel",
                               "munged", "munge", "unmunge")
                   if not shutil.which(p, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")]
        if missing:
            raise SlurmUnavailable("not installed: " + ", ".join(missing) +
                                   " (Debian: apt-get install slurm-wlm munge; scripts/install-deps.sh does it)")

    def _which(self, prog):
        return shutil.which(prog, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")

    def _munge_ok(self):
        try:
            enc = subprocess.run([self._which("munge"), "-n"], capture_output=True, timeout=10)
            if enc.returncode != 0:
                return False
            dec = subprocess.run([self._which("unmunge")], input=enc.stdout, capture_output=True, timeout=10)
            return dec.returncode == 0 and b"Success" in dec.stdout
        except (OSError, subprocess.TimeoutExpired):
            return False

    def _ensure_munge(self):
        if self._munge_ok():
            self.log("munged already running; using it")
            return
        import pwd
        try:
            pw = pwd.getpwnam("munge")
        except KeyError:
            raise SlurmUnavailable("no munge user (the munge package is not installed properly)")
        key = "/etc/munge/munge.key"
        if not os.path.exists(key):
            # A fresh random key; munged insists on the key being the munge
            # user's and unreadable by others.
            os.makedirs("/etc/munge", mode=0o700, exist_ok=True)
            mk = self._which("mungekey")
            if mk:
                subprocess.run([mk, "--create", "--keyfile", key], check=True, capture_output=True)
            else:
                with open("/dev/urandom", "rb") as r, open(key, "wb") as w:
                    w.write(r.read(1024))
            os.chown("/etc/munge", pw.pw_uid, pw.pw_gid)
            os.chown(key, pw.pw_uid, pw.pw_gid)
            os.chmod(key, 0o400)
            self.log(f"created {key}")
        os.makedirs("/run/munge", mode=0o755, exist_ok=True)
        os.chown("/run/munge", pw.pw_uid, pw.pw_gid)
        for d in ("/var/lib/munge", "/var/log/munge"):
            if os.path.isdir(d):
                os.chown(d, pw.pw_uid, pw.pw_gid)
        log = os.path.join(self.tmp, "munged.log")
        self._logs["munged"] = log
        # In the foreground munged logs to stderr, which goes to munged.log
        # in our temporary directory (its own log file, with munged's checks
        # on the permissions of the path, is not used).
        with open(log, "wb") as out:
            p = subprocess.Popen([self._which("munged"), "--foreground", "--force"], stdout=out,
                                 stderr=subprocess.STDOUT, user=pw.pw_uid, group=pw.pw_gid,
                                 start_new_session=True)
        self._procs["munged"] = p
        for _ in range(100):
            if self._munge_ok():
                self.log(f"started munged (pid {p.pid})")
                return
            if p.poll() is not None:
                break
            time.sleep(0.1)
        raise SlurmError("munged did not start:\n" + _read(log))

    def _write_conf(self):
        host = socket.gethostname().split(".")[0]
        self.node = host
        t = self.tmp
        for d in ("state", "spool", "log"):
            os.makedirs(os.path.join(t, d), exist_ok=True)
        self.ctld_port, self.slurmd_port = _free_port(), _free_port()
        while self.slurmd_port == self.ctld_port:
            self.slurmd_port = _free_port()
        self._logs["slurmctld"] = os.path.join(t, "log", "slurmctld.log")
        self._logs["slurmd"] = os.path.join(t, "log", "slurmd.log")
        self.conf = os.path.join(t, "slurm.conf")
        conf = f"""# Generated by tests/slurm/harness.py for one test run.
ClusterName=sf{os.getpid()}
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={t}/state
SlurmdSpoolDir={t}/spool
SlurmctldPidFile={t}/slurmctld.pid
SlurmdPidFile={t}/slurmd.pid
SlurmctldLogFile={self._logs["slurmctld"]}
SlurmdLogFile={self._logs["slurmd"]}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
# Requeue (scontrol requeue, and the jobs' own) must be allowed.
JobRequeue=1
# A requeued job waits cred_expire seconds (default 120) before it may start
# again; a few seconds are enough on one node.
AuthInfo=cred_expire=5
# Finished jobs stay visible to scontrol show job for the tests.
MinJobAge=900
KillWait=10
InactiveLimit=0
SlurmdTimeout=60
# The node line below is authoritative, whatever slurmd detects.
SlurmdParameters=config_overrides
NodeName={host} NodeAddr=127.0.0.1 NodeHostname={host} CPUs={self.cpus} State=UNKNOWN
PartitionName={self.partition} Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""
        with open(self.conf, "w") as f:
            f.write(conf)
        self.env = dict(os.environ, SLURM_CONF=self.conf)
        # A job environment that would override the generated configuration.
        for k in list(self.env):
            if k.startswith("SLURM_") and k != "SLURM_CONF":
                del self.env[k]

    def _start_daemon(self, name, argv):
        with open(os.path.join(self.tmp, "log", f"{name}.stderr"), "wb") as out:
            p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                 start_new_session=True)
        self._procs[name] = p
        self.log(f"started {name} (pid {p.pid})")
        return p

    def _wait_for(self, what, cond, timeout):
        end = time.time() + timeout
        while time.time() < end:
            for name, p in self._procs.items():
                if p.poll() is not None:
                    raise SlurmError(f"{name} exited with {p.returncode} while waiting for {what}")
            if cond():
                return
            time.sleep(0.25)
        raise SlurmError(f"timed out after {timeout} s waiting for {what}")

    def start(self, timeout=60):
        self._check_available()
        _reap_orphans(self.log)
        self.tmp = tempfile.mkdtemp(prefix=TMP_PREFIX)
        os.chmod(self.tmp, 0o755)
        with open(os.path.join(self.tmp, "owner.pid"), "w") as f:
            f.write(f"{os.getpid()}\n")
        self._stopped = False
        atexit.register(self.stop)
        # atexit does not run when a signal kills the interpreter: turn
        # SIGTERM and SIGHUP (a test timeout, a closed terminal) into
        # SystemExit, so that the with-block and stop() still run.
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) == signal.SIG_DFL:
                signal.signal(sig, _exit_on_signal)
        try:
            self._ensure_munge()
            self._write_conf()
            self._start_daemon("slurmctld", [self._which("slurmctld"), "-D", "-i", "-f", self.conf])
            self._wait_for("slurmctld to answer",
                           lambda: self.cmd(["scontrol", "ping"], check=False).stdout.find("UP") >= 0, timeout)
            self._start_daemon("slurmd", [self._which("slurmd"), "-D", "-f", self.conf, "-N", self.node])
            self._wait_for("the node to be idle",
                           lambda: self.cmd(["sinfo", "-h", "-N", "-o", "%t"], check=False).stdout.strip()
                           in ("idle", "mix", "alloc"), timeout)
            self.log(f"cluster up in {self.tmp} (node {self.node}, {self.cpus} CPUs, "
                     f"ports {self.ctld_port}/{self.slurmd_port})")
        except BaseException:
            self.failed = True
            self.stop()
            raise

    # -- clients ---------------------------------------------------------
    def cmd(self, argv, check=True, timeout=60, **kw):
        """Runs a Slurm client command against this cluster."""
        env = kw.pop("env", None) or self.env
        p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, **kw)
        if check and p.returncode != 0:
            raise SlurmError(f"{' '.join(argv)}: exit {p.returncode}\n{p.stdout}{p.stderr}")
        return p

    def sbatch(self, args, cwd=None, env=None):
        """Submits a batch job (sbatch --parsable ARGS); returns the job id."""
        p = self.cmd(["sbatch", "--parsable"] + list(args), cwd=cwd, env=env)
        job = p.stdout.strip().split(";")[0]
        if not job.isdigit():
            raise SlurmError(f"sbatch printed no job id: {p.stdout}{p.stderr}")
        self.log(f"submitted job {job}: sbatch {' '.join(args)}")
        return job

    def job(self, job):
        """The job's record from scontrol show job, as a dict ({} when unknown)."""
        p = self.cmd(["scontrol", "show", "job", "-o", str(job)], check=False)
        if p.returncode != 0:
            return {}
        return parse_show(p.stdout.splitlines()[0] if p.stdout else "")

    def state(self, job):
        return self.job(job).get("JobState", "UNKNOWN")

    def wait(self, job, timeout, until=None, restarts=None):
        """Waits until the job is in a terminal state (or until(info) holds);
        with restarts=N also until it has been restarted N times. Returns the
        job record; raises SlurmError on timeout."""
        end = time.time() + timeout
        info = {}
        while time.time() < end:
            info = self.job(job)
            if until is not None:
                if until(info):
                    return info
            elif info.get("JobState") in TERMINAL_STATES and \
                    (restarts is None or int(info.get("Restarts", "0")) >= restarts):
                return info
            time.sleep(0.5)
        raise SlurmError(f"job {job} not done after {timeout} s: {info}")

    def exit_code(self, info):
        """(exit status, signal) of a finished job's batch script."""
        code, _, sig = info.get("ExitCode", "-1:0").partition(":")
        return int(code), int(sig or 0)

    def logs(self):
        """The daemons' logs, for a failure report."""
        parts = []
        for name, path in self._logs.items():
            parts.append(f"===== {name} log ({path}) =====\n{_read(path, 20000)}")
            err = os.path.join(self.tmp or "", "log", f"{name}.stderr")
            if os.path.exists(err) and os.path.getsize(err):
                parts.append(f"===== {name} stderr =====\n{_read(err, 5000)}")
        return "\n".join(parts)

    # -- stop ------------------------------------------------------------
    def _our_job_pids(self):
        # Job processes (slurmstepd, the batch script, mpirun, the ranks)
        # carry this cluster's SLURM_CONF in their environment: slurmstepd
        # inherits it from our slurmd and jobs from the submitting client.
        return [int(d) for d in os.listdir("/proc")
                if d.isdigit() and int(d) != os.getpid() and _environ_conf(d) == self.conf]

    def stop(self):
        if self._stopped:
            return
        self._stopped = True
        try:
            atexit.unregister(self.stop)
        except Exception:
            pass
        ctld = self._procs.get("slurmctld")
        if ctld is not None and ctld.poll() is None and self.env is not None:
            # Cancel what is left so the steps end through Slurm first.
            try:
                self.cmd(["scancel", "--partition", self.partition], check=False, timeout=15)
                end = time.time() + 15
                while time.time() < end:
                    q = self.cmd(["squeue", "-h", "-o", "%i"], check=False, timeout=15)
                    if q.returncode != 0 or not q.stdout.strip():
                        break
                    time.sleep(0.5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.failed:
            print(self.logs(), file=sys.stderr, flush=True)
        # Daemons in the reverse order of their start: slurmd, slurmctld, munged.
        for name in ("slurmd", "slurmctld", "munged"):
            p = self._procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
            self.log(f"stopped {name} (pid {p.pid})")
        if self.env is not None:
            leftovers = self._our_job_pids()
            for pid in leftovers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            if leftovers:
                self.log(f"killed leftover job processes {leftovers}")
        if self.tmp and not self.keep and not self.failed:
            shutil.rmtree(self.tmp, ignore_errors=True)
        elif self.tmp:
            self.log(f"kept {self.tmp}")


def main():
    with SlurmCluster() as c:
        print(c.cmd(["sinfo"]).stdout)
        print(f"export SLURM_CONF={c.conf}")
        try:
            input("Enter stops the cluster... ")
        except EOFError:
            pass


if __name__ == "__main__":
    try:
        main()
    except SlurmUnavailable as e:
        print(f"harness: Slurm unavailable: {e}", file=sys.stderr)
        sys.exit(77)
