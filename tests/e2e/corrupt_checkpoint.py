#!/usr/bin/env python3
"""Restart from damaged, foreign and stale checkpoints.

A run of the default workflow (inputs/demo.yaml, 1.2M rows, a checkpoint
every 64 shard pieces) is killed mid-pass, leaving checkpoint.h5 and
checkpoint.prev.h5. On fresh copies of that directory:
  - newest truncated to half, or a byte of an agent's state flipped, or its
    format_version set to 0 (needs h5py): the restart falls back to the
    previous checkpoint, says so on stderr and in run.json restart.notes,
    resumes from the previous file's sequence and ends with result.json
    byte-identical to an uninterrupted run;
  - both files damaged: the run starts from the beginning, same result;
  - a result-relevant change (input.seed) with --restart: exit 3 on every
    rank, the message naming both workflow hashes (read from the files with
    h5dump); without --restart: a note, a fresh run equal to a clean run
    with that seed;
  - a change that is not result-relevant: resumes, same result.
A CSV workflow checkpointed mid-pass is refused with --restart (exit 3, the
message naming the input and both identities) once the CSV grew by a row or
only its mtime changed. With HDF5_USE_FILE_LOCKING=FALSE a crash and a
restart work. h5dump -H shows the documented layout (and h5py reads it,
when installed).

usage: corrupt_checkpoint.py MPIEXEC SHARDFLOW SOURCE_DIR
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

MPIEXEC, BINARY, SRC = sys.argv[1], sys.argv[2], sys.argv[3]
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
DEMO = os.path.join(SRC, "inputs", "demo.yaml")
RUN_TIMEOUT = 400
failures = []
tmp = tempfile.mkdtemp(prefix="sf-ckpt-")
try:
    import h5py
except ImportError:
    h5py = None


def expect(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


class Proc:
    def __init__(self, rc, out, err):
        self.returncode, self.stdout, self.stderr = rc, out, err


def run(cmd, timeout=RUN_TIMEOUT, what=None, extra_env=None):
    """Runs cmd in its own process group; on timeout kills the group and fails."""
    e = dict(env, **(extra_env or {}))
    p = subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        return Proc(p.returncode, out, err)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        expect(False, "%s: finished within %d s (killed)" % (what or " ".join(cmd[:6]), timeout))
        return Proc(-9, out, err)


def shardflow(np_, out, args, what=None, rank_rc=False, extra_env=None):
    """mpirun -np N shardflow run ARGS --out OUT; with rank_rc every rank's exit
    status goes to OUT.rc/RANK (the wrapper exits 0 so that all ranks finish)."""
    cmd = [MPIEXEC, "-np", str(np_)]
    if rank_rc:
        rcdir = out + ".rc"
        shutil.rmtree(rcdir, ignore_errors=True)
        os.makedirs(rcdir)
        cmd += ["sh", "-c", '"$0" "$@"; echo $? > "%s/${OMPI_COMM_WORLD_RANK}"; exit 0' % rcdir]
    cmd += [BINARY, "run"] + args + ["--out", out]
    return run(cmd, what=what, extra_env=extra_env)


def rank_codes(out, np_):
    codes = []
    for r in range(np_):
        path = os.path.join(out + ".rc", str(r))
        codes.append(int(open(path).read().strip()) if os.path.exists(path) else None)
    return codes


def result_bytes(out):
    path = os.path.join(out, "result.json")
    return open(path, "rb").read() if os.path.exists(path) else None


def runinfo(out):
    path = os.path.join(out, "run.json")
    return json.load(open(path)) if os.path.exists(path) else None


def h5dump(*args):
    p = run(["h5dump"] + list(args), timeout=120, what="h5dump")
    return p.stdout if p.returncode == 0 else None


def h5attr(path, name):
    """A scalar attribute of the root group, as h5dump prints it."""
    out = h5dump("-a", "/" + name, path)
    if out is None:
        return None
    m = re.search(r"\(0\): (\"?)(.*?)\1\s*$", out, re.M)
    if m is None:
        return None
    v = m.group(2)
    return v if m.group(1) else int(v) if re.fullmatch(r"-?\d+", v) else v


def dataset_offset(path, dset):
    """(offset, size) of a contiguous dataset in the file: h5py if present, else h5dump -p."""
    if h5py is not None:
        with h5py.File(path, "r") as f:
            d = f[dset]
            return d.id.get_offset(), d.id.get_storage_size()
    out = h5dump("-p", "-H", "-d", dset, path)
    if out is not None:
        m = re.search(r"CONTIGUOUS\s+SIZE (\d+)\s+OFFSET (\d+)", out)
        if m:
            return int(m.group(2)), int(m.group(1))
    return None


def flip_byte(path, dset):
    loc = dataset_offset(path, dset)
    if loc is None or loc[0] is None:
        print("note: no offset for %s, flipping a byte in the middle of the file" % dset)
        at = os.path.getsize(path) // 2
    else:
        at = loc[0] + loc[1] // 2
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x5A]))
    return at


def truncate_half(path):
    os.truncate(path, os.path.getsize(path) // 2)


def copy_case(src, name):
    dst = os.path.join(tmp, name)
    shutil.copytree(src, dst)
    return dst


# ---- the demo workflow: reference, then a run killed mid-pass ----
# Checkpoint settings are not result-relevant: the reference uses the same.
DEMO_ARGS = [DEMO, "--set", "input.rows=1200000", "--set", "checkpoint.every_shards=64"]
ref = os.path.join(tmp, "ref")
p = shardflow(2, ref, DEMO_ARGS, what="reference")
if not expect(p.returncode == 0, "uninterrupted reference exits 0 (%s)" % p.stderr.strip()[-300:]):
    sys.exit("no reference; outputs in %s" % tmp)
REF = result_bytes(ref)
ref_res = json.loads(REF)

# The crash: rank 1 at a third of the units it took in the reference's first
# pass, so that the job dies mid-pass after several per-round checkpoints
# (rank 0 takes units only while rank 1's queue is full, so how many it
# does depends on the schedule; rank 1 does most of them).
units = json.load(open(os.path.join(ref, "run.json")))["timings"]["passes"][0]["units_sent"]
crash_at = max(3, units // 3)
base = os.path.join(tmp, "base")
p = shardflow(2, base, DEMO_ARGS + ["--inject", "crash:rank=1,point=round,at=%d" % crash_at], what="crash")
expect(p.returncode != 0 and "injected crash" in p.stderr,
       "crash:rank=1 at its unit %d of the first pass's %d kills the run (exit %d)" % (crash_at, units, p.returncode))
ck = os.path.join(base, "checkpoint")
NEW, PREV = os.path.join(ck, "checkpoint.h5"), os.path.join(ck, "checkpoint.prev.h5")
if not expect(os.path.exists(NEW) and os.path.exists(PREV), "checkpoint.h5 and checkpoint.prev.h5 both exist"):
    sys.exit("no checkpoint pair; outputs in %s" % tmp)
seq_new, seq_prev = h5attr(NEW, "sequence"), h5attr(PREV, "sequence")
nlevels = h5attr(NEW, "nlevels")
print("checkpoint.h5: sequence %s level %s rows_read %s; checkpoint.prev.h5: sequence %s level %s rows_read %s" % (
    seq_new, h5attr(NEW, "level"), h5attr(NEW, "rows_read"), seq_prev, h5attr(PREV, "level"),
    h5attr(PREV, "rows_read")))
expect(isinstance(seq_new, int) and isinstance(seq_prev, int) and seq_new == seq_prev + 1,
       "sequences: newest %s = previous %s + 1" % (seq_new, seq_prev))
for path in (NEW, PREV):
    lvl, rows = h5attr(path, "level"), h5attr(path, "rows_read")
    expect(isinstance(lvl, int) and lvl < nlevels and isinstance(rows, int) and rows > 0,
           "%s is mid-pass (level %s of %s, %s rows read)" % (os.path.basename(path), lvl, nlevels, rows))

# ---- the layout, as h5dump (and h5py) see it ----
header = open(os.path.join(SRC, "include", "shardflow", "checkpoint.h")).read()
FORMAT_VERSION = int(re.search(r"#define SF_CKPT_FORMAT_VERSION (\d+)", header).group(1))
stage_names = re.findall(r"^  - name: (\S+)", open(DEMO).read(), re.M)
H = h5dump("-H", NEW) or ""
for st in stage_names:
    expect(re.search(r'GROUP "stages" \{.*GROUP "%s" \{' % re.escape(st), H, re.S) is not None,
           "h5dump -H: group /stages/%s" % st)
analyze_ids = sorted(ref_res["results"][stage_names[0]].keys())
LS = run(["h5ls", "-r", NEW], timeout=120, what="h5ls").stdout
dsets = sorted(re.findall(r"^/stages/%s/(\S+)\s+Dataset" % re.escape(stage_names[0]), LS, re.M))
expect(dsets == analyze_ids, "h5ls -r: one dataset per agent of %s (%d; result.json has %d)" % (
    stage_names[0], len(dsets), len(analyze_ids)))
expect(all('DATASET "%s"' % d in H for d in dsets), "h5dump -H shows the same datasets")
for a in ("format_version", "config_hash", "sequence", "checksum", "input_id"):
    expect('ATTRIBUTE "%s"' % a in H, "h5dump -H: root attribute %s" % a)
old_hash = h5attr(NEW, "config_hash")
expect(h5attr(NEW, "format_version") == FORMAT_VERSION, "format_version %s == SF_CKPT_FORMAT_VERSION %d" % (
    h5attr(NEW, "format_version"), FORMAT_VERSION))
expect(isinstance(old_hash, str) and re.fullmatch(r"[0-9a-f]{16}", old_hash) is not None,
       "config_hash is 16 hex digits (%s)" % old_hash)
expect(h5attr(PREV, "config_hash") == old_hash, "both files carry the same config_hash")
if h5py is not None:
    with h5py.File(NEW, "r") as f:
        expect(int(f.attrs["format_version"]) == FORMAT_VERSION and int(f.attrs["sequence"]) == seq_new,
               "h5py reads format_version and sequence as h5dump does")
        hv = f.attrs["config_hash"]
        hv = hv.decode() if isinstance(hv, bytes) else str(hv)
        expect(hv == old_hash, "h5py reads config_hash %s" % hv)
        expect(sorted(f["stages"][stage_names[0]].keys()) == analyze_ids, "h5py lists the same agent datasets")
        expect(f["stages"][stage_names[0]][analyze_ids[0]].dtype.itemsize == 1, "h5py: states are u8 datasets")
else:
    print("skip: h5py is not installed; the layout was checked with h5dump only")


def check_fallback(case, out, p, want_reason=None):
    """The restart used checkpoint.prev.h5 and said so."""
    if not expect(p.returncode == 0, "%s: restart exits 0 (%s)" % (case, p.stderr.strip()[-300:])):
        return
    expect(result_bytes(out) == REF, "%s: result.json identical to the uninterrupted run" % case)
    info = runinfo(out)
    rs = info["restart"]
    notes = rs["notes"]
    err = [l for l in p.stderr.splitlines() if l.startswith("shardflow: ") and "checkpoint.prev.h5" in l]
    expect(len(err) >= 1 and "checkpoint.h5" in err[0], "%s: stderr says checkpoint.h5 was passed over for "
           "checkpoint.prev.h5 (%s)" % (case, err[:1]))
    expect("checkpoint.h5" in notes and "using checkpoint.prev.h5" in notes,
           "%s: run.json restart.notes says the previous was used (%s)" % (case, notes.strip()))
    if want_reason:
        expect(any(w in notes for w in want_reason), "%s: the note gives the reason (%s)" % (case, want_reason))
    expect(rs["resumed"] is True and rs["from_sequence"] == seq_prev,
           "%s: resumed from sequence %s == previous's %s" % (case, rs["from_sequence"], seq_prev))


RESTART = DEMO_ARGS + ["--restart"]

# A: newest truncated to half its size.
out = copy_case(base, "truncated")
truncate_half(os.path.join(out, "checkpoint", "checkpoint.h5"))
p = shardflow(2, out, RESTART, what="truncated")
check_fallback("truncated newest", out, p)

# B: one byte of an agent's state flipped (HDF5 does not checksum raw data: ours must).
out = copy_case(base, "flipped")
dset = "/stages/%s/%s" % (stage_names[0], analyze_ids[0])
at = flip_byte(os.path.join(out, "checkpoint", "checkpoint.h5"), dset)
print("flipped the byte at offset %d (inside %s)" % (at, dset))
p = shardflow(2, out, RESTART, what="flipped")
check_fallback("flipped byte in %s" % dset, out, p, ["checksum"])

# C: both damaged: starts afresh.
out = copy_case(base, "both")
truncate_half(os.path.join(out, "checkpoint", "checkpoint.h5"))
flip_byte(os.path.join(out, "checkpoint", "checkpoint.prev.h5"), dset)
p = shardflow(2, out, RESTART, what="both corrupt")
if expect(p.returncode == 0, "both corrupt: run exits 0 (%s)" % p.stderr.strip()[-300:]):
    expect(result_bytes(out) == REF, "both corrupt: result.json identical to the uninterrupted run")
    rs = runinfo(out)["restart"]
    expect(rs["resumed"] is False, "both corrupt: restart.resumed false")
    expect("checkpoint.h5" in rs["notes"] and "checkpoint.prev.h5" in rs["notes"] and "beginning" in rs["notes"],
           "both corrupt: notes name both files and the fresh start (%s)" % rs["notes"].strip())

# E: another workflow (input.seed 43) without --restart: note, fresh run.
ref43 = os.path.join(tmp, "ref43")
p = shardflow(2, ref43, DEMO_ARGS + ["--set", "input.seed=43"], what="seed 43 reference")
expect(p.returncode == 0, "clean run with input.seed=43 exits 0")
REF43 = result_bytes(ref43)
out = copy_case(base, "foreign-auto")
p = shardflow(2, out, DEMO_ARGS + ["--set", "input.seed=43"], what="foreign without --restart")
new_hash = None
if expect(p.returncode == 0, "foreign checkpoint without --restart: exits 0 (%s)" % p.stderr.strip()[-300:]):
    rs = runinfo(out)["restart"]
    expect(rs["resumed"] is False and old_hash in rs["notes"],
           "foreign checkpoint ignored with a note naming its hash (%s)" % rs["notes"].strip())
    expect(any(old_hash in l for l in p.stderr.splitlines() if l.startswith("shardflow: ")),
           "foreign checkpoint: the note is on stderr too")
    expect(result_bytes(out) == REF43 and REF43 != REF, "foreign checkpoint: result equals a clean seed-43 run")
    new_hash = h5attr(os.path.join(out, "checkpoint", "checkpoint.h5"), "config_hash")
    expect(new_hash is not None and new_hash != old_hash, "seed 43 has another hash (%s vs %s)" % (new_hash, old_hash))

# D: the same with --restart: refused on every rank, both hashes named.
out = copy_case(base, "foreign-restart")
p = shardflow(2, out, RESTART + ["--set", "input.seed=43"], what="foreign with --restart", rank_rc=True)
codes = rank_codes(out, 2)
expect(codes == [3, 3], "foreign checkpoint with --restart: every rank exits 3 (%s)" % codes)
msg = [l for l in p.stderr.splitlines() if old_hash in l]
expect(len(msg) == 1 and new_hash is not None and new_hash in msg[0],
       "foreign checkpoint with --restart: one message naming both hashes %s and %s (%s)" % (old_hash, new_hash, msg))
expect(result_bytes(out) is None, "foreign checkpoint with --restart: no result.json")
expect(h5attr(os.path.join(out, "checkpoint", "checkpoint.h5"), "sequence") == seq_new,
       "refused checkpoint left untouched")

# A change that is not result-relevant (fault and distribution settings): resumes.
out = copy_case(base, "irrelevant")
p = shardflow(2, out, RESTART + ["--set", "fault.max_attempts=5", "--set", "distribute.mode=static"],
              what="irrelevant change")
if expect(p.returncode == 0, "restart with other fault/distribution settings exits 0 (%s)" % p.stderr.strip()[-300:]):
    rs = runinfo(out)["restart"]
    expect(rs["resumed"] is True and rs["from_sequence"] == seq_new,
           "settings outside the result hash do not block the restart (from %s)" % rs["from_sequence"])
    expect(result_bytes(out) == REF, "and the result is identical")

# F: an older format version (the checksum covers attributes: either reason is fine).
if h5py is not None:
    import numpy
    out = copy_case(base, "version")
    with h5py.File(os.path.join(out, "checkpoint", "checkpoint.h5"), "r+") as f:
        f.attrs.modify("format_version", numpy.uint32(0))
    expect(h5attr(os.path.join(out, "checkpoint", "checkpoint.h5"), "format_version") == 0,
           "format_version set to 0 with h5py")
    p = shardflow(2, out, RESTART, what="old version")
    check_fallback("format_version 0", out, p, ["version", "checksum"])
else:
    print("skip: format_version 0 case needs h5py to rewrite the attribute (not installed)")

# ---- a CSV input: its identity is part of the checkpoint ----
csv = os.path.join(tmp, "data.csv")
pristine = os.path.join(tmp, "pristine.csv")
p = run([BINARY, "gen", "--rows", "200000", "--format", "csv", "-o", pristine], what="gen csv")
expect(p.returncode == 0, "gen writes a 200000-row CSV")
wf = os.path.join(tmp, "csv.yaml")
with open(wf, "w") as f:
    f.write("name: csvck\n"
            "input: {format: csv, path: data.csv, batch_rows: 16384}\n"
            "shard: {strategy: hash, key: user_id, shards: 8}\n"
            "checkpoint: {every_shards: 8}\n"
            "stages:\n"
            "  - name: s\n"
            "    agents:\n"
            "      - {agent: stats, id: latency, column: latency_ms, by: [service]}\n"
            "      - {agent: distinct, id: users, column: user_id, by: [service]}\n"
            "      - {agent: quantiles, id: latency_q, column: latency_ms, q: [0.5, 0.9, 0.99]}\n")


def fresh_csv():
    shutil.copy2(pristine, csv)   # same bytes and the same mtime


fresh_csv()
cref = os.path.join(tmp, "csv-ref")
p = shardflow(2, cref, [wf], what="csv reference")
expect(p.returncode == 0, "CSV reference exits 0 (%s)" % p.stderr.strip()[-300:])
CREF = result_bytes(cref)


# Rank 1 dies a third of the way through its units (as for the demo above).
csv_crash_at = max(3, json.load(open(os.path.join(cref, "run.json")))["timings"]["passes"][0]["units_sent"] // 3)


def csv_checkpoint(name, extra_env=None):
    out = os.path.join(tmp, name)
    p = shardflow(2, out, [wf, "--inject", "crash:rank=1,point=round,at=%d" % csv_crash_at], what=name,
                  extra_env=extra_env)
    new = os.path.join(out, "checkpoint", "checkpoint.h5")
    expect(p.returncode != 0 and os.path.exists(new) and h5attr(new, "level") == 0 and
           (h5attr(new, "rows_read") or 0) > 0, "%s: crashed with a mid-pass checkpoint (exit %d)" % (name, p.returncode))
    return out


cbase = csv_checkpoint("csv-base")
old_id = h5attr(os.path.join(cbase, "checkpoint", "checkpoint.h5"), "input_id")
st = os.stat(csv)
expect(isinstance(old_id, str) and "size=%d" % st.st_size in old_id,
       "input_id names the CSV's size %d (%s)" % (st.st_size, old_id))

out = copy_case(cbase, "csv-same")
p = shardflow(2, out, [wf, "--restart"], what="csv unchanged")
if expect(p.returncode == 0, "CSV unchanged: restart exits 0 (%s)" % p.stderr.strip()[-300:]):
    expect(runinfo(out)["restart"]["resumed"] is True and result_bytes(out) == CREF,
           "CSV unchanged: resumed, result identical to the uninterrupted run")

# One more row appended.
out = copy_case(cbase, "csv-grown")
with open(pristine) as f:
    f.readline()
    row = f.readline()
with open(csv, "a") as f:
    f.write(row)
grown = os.stat(csv).st_size
p = shardflow(2, out, [wf, "--restart"], what="csv grown", rank_rc=True)
codes = rank_codes(out, 2)
expect(codes == [3, 3], "CSV grown by a row: --restart refused, every rank exits 3 (%s)" % codes)
msg = [l for l in p.stderr.splitlines() if "size=%d" % st.st_size in l]
expect(len(msg) == 1 and "input" in msg[0] and "size=%d" % grown in msg[0],
       "CSV grown: message names the input and both sizes %d, %d (%s)" % (st.st_size, grown, msg))
p = shardflow(2, out, [wf], what="csv grown, no --restart")
if expect(p.returncode == 0, "CSV grown, without --restart: runs (%s)" % p.stderr.strip()[-300:]):
    rs = runinfo(out)["restart"]
    expect(rs["resumed"] is False and "size=%d" % st.st_size in rs["notes"],
           "CSV grown, without --restart: starts afresh with a note (%s)" % rs["notes"].strip())

# Same bytes, only the mtime moved.
fresh_csv()
out = copy_case(cbase, "csv-touched")
os.utime(csv, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))
p = shardflow(2, out, [wf, "--restart"], what="csv touched", rank_rc=True)
codes = rank_codes(out, 2)
expect(codes == [3, 3], "CSV mtime changed: --restart refused, every rank exits 3 (%s)" % codes)
mt_old, mt_new = ["mtime=%d.%09d" % divmod(ns, 10**9) for ns in (st.st_mtime_ns, os.stat(csv).st_mtime_ns)]
msg = [l for l in p.stderr.splitlines() if "input" in l and mt_old in l]
expect(len(msg) == 1 and mt_new in msg[0],
       "CSV mtime changed: one message naming the input and both mtimes %s, %s (%s)" % (mt_old, mt_new, msg))

# HDF5 file locking off: crash and restart as usual.
fresh_csv()
NOLOCK = {"HDF5_USE_FILE_LOCKING": "FALSE"}
out = csv_checkpoint("csv-nolock", NOLOCK)
p = shardflow(2, out, [wf, "--restart"], what="csv nolock restart", extra_env=NOLOCK)
if expect(p.returncode == 0, "HDF5_USE_FILE_LOCKING=FALSE: restart exits 0 (%s)" % p.stderr.strip()[-300:]):
    expect(runinfo(out)["restart"]["resumed"] is True and result_bytes(out) == CREF,
           "HDF5_USE_FILE_LOCKING=FALSE: resumed, result identical")

if failures:
    print("%d failure(s); outputs kept in %s" % (len(failures), tmp))
    sys.exit(1)
shutil.rmtree(tmp)
print("all checkpoint corruption checks passed")
