#!/usr/bin/env python3
"""distribute.mode: parallel-read, end to end.

1. A CSV with quoted fields holding delimiters, doubled quotes and line
   feeds, CRLF line ends and blank lines: parallel-read at -np 1..4, with
   and without the exchange of records, gives the same result.json as
   static mode at -np 1, and every row is counted once (the row count is
   computed here from the text with Python's csv module).
2. A quote inside an unquoted field (which the reader accepts) before
   quoted fields with line feeds: each run either gives exactly the static
   result or stops with the message about the ambiguous split, exit 4.
3. A rank killed in the second pass: --restart resumes from the end of the
   first pass (at another rank count, and at 2 threads per rank restarted
   at another thread count) and gives the same bytes.
4. A checkpoint that stopped inside a pass (written in static mode) is
   refused by parallel-read with a clear message (exit 3).
5. Several threads per rank (each rank reads its part as one sub-part per
   thread): -np 1 and 2 x OMP_NUM_THREADS 1, 2 and 3 give static mode's
   result.json on the quoted CSV (with and without the exchange), on an
   HDF5 table and on the generator; run.json says every rank read
   OMP_NUM_THREADS sub-parts.
   Pieces in place (size sharding, numeric pass columns, views of the
   batches) on and off, with the stats kernels on and off, give the same
   bytes, and run.json counts the pieces taken in place.
6. Bad records at 2 threads per rank: under on_bad_row: skip the same
   result.json and bad_rows as static mode (whose count is the number of
   records spoiled here); under fail the same error, naming the first bad
   record's line (computed here from the text), although a later sub-part
   or rank meets its own bad record rounds earlier.

usage: parallel_read.py MPIEXEC SHARDFLOW SOURCE_DIR
"""
import csv
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

MPIEXEC, BINARY = sys.argv[1], sys.argv[2]
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")


def run(args, np_=1, expect=0, threads=None):
    omp = ["-x", f"OMP_NUM_THREADS={threads}"] if threads else []
    cmd = [MPIEXEC, "-np", str(np_), "--oversubscribe", "--bind-to", "none"] + omp + [BINARY] + args
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if expect is not None and p.returncode != expect:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}, expected {expect}\n{p.stdout}\n{p.stderr}")
    return p


def result(out):
    with open(os.path.join(out, "result.json"), "rb") as f:
        return f.read()


def quoted_csv(path, rows, seed, stray_quote=False):
    """Rows of (name, city, amount, n) with awkward quoting; returns the
    number of records and the exact sum of n, computed independently."""
    rnd = random.Random(seed)
    names = ['plain', 'with,comma', 'with "quotes"', 'line\nfeed', 'both,"\n"', 'crlf\r\ninside', '']
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow(["name", "city", "amount", "n"])
    total = 0
    for i in range(rows):
        name = rnd.choice(names)
        city = rnd.choice(["Oslo", "Lima", "a\nb", 'say "hi"'])
        amount = f"{rnd.randint(-100000, 100000) / 1000:.3f}"
        n = rnd.randint(0, 1000)
        total += n
        w.writerow([name, city, amount, n])
        if i % 997 == 0:
            buf.write("\r\n")  # a blank line: not a record
    text = buf.getvalue()
    if stray_quote:
        # The first data record's name becomes ab"c: legal for the reader
        # (a quote inside an unquoted field is an ordinary character), but
        # it flips the quote parity that the split relies on.
        first = text.index("\r\n") + 2
        text = text[:first] + 'ab"c,Oslo,1.000,1\r\n' + text[first:]
    with open(path, "w", newline="") as f:
        f.write(text)
    if stray_quote:
        return None, None  # Python's csv module reads ab"c differently
    with open(path, newline="") as f:
        recs = [r for r in csv.reader(f)][1:]
    recs = [r for r in recs if r]
    return len(recs), sum(int(r[3]) for r in recs)


def workflow(path, data, strategy="hash", batch_rows=1000):
    key = ", key: name" if strategy != "size" else ""
    with open(path, "w") as f:
        f.write(f"""name: pr
input: {{format: csv, path: {data}, batch_rows: {batch_rows}, block_size: 4096}}
shard: {{strategy: {strategy}, shards: 11{key}}}
distribute: {{mode: static, morsel_rows: 500}}
stages:
  - name: first
    agents:
      - {{agent: stats, id: amount, column: amount, by: [name]}}
      - {{agent: stats, id: n, column: n}}
      - {{agent: distinct, id: cities, column: city, by: [name]}}
      - {{agent: topk, id: names, column: name, k: 5}}
  - name: second
    after: [first]
    agents:
      - {{agent: stats, id: n_by_city, column: n, by: [city]}}
""")


def main():
    tmp = tempfile.mkdtemp(prefix="sf-pr-")
    data = os.path.join(tmp, "q.csv")
    nrec, nsum = quoted_csv(data, 6000, 11)
    for strategy in ("hash", "size"):
        wf = os.path.join(tmp, f"wf-{strategy}.yaml")
        workflow(wf, data, strategy)
        ref_out = os.path.join(tmp, f"ref-{strategy}")
        run(["run", wf, "--out", ref_out])
        ref = result(ref_out)
        got = json.loads(ref)["results"]["first"]["n"]
        if got["count"] != nrec or got["sum"] != nsum:
            sys.exit(f"FAIL: static run counted {got['count']} rows summing to {got['sum']}, "
                     f"the csv module finds {nrec} and {nsum}")
        for np_ in (1, 2, 3, 4):
            for exchange in ("auto", "never"):
                out = os.path.join(tmp, f"pr-{strategy}-{np_}-{exchange}")
                run(["run", wf, "--out", out, "--set", "distribute.mode=parallel-read",
                     "--set", f"distribute.exchange={exchange}", "--set", "distribute.chunk_bytes=1000"], np_)
                if result(out) != ref:
                    sys.exit(f"FAIL: parallel-read {strategy} -np {np_} exchange {exchange} differs from static")
                with open(os.path.join(out, "run.json")) as f:
                    info = json.load(f)
                if sum(info["shards"]["rows"]) != nrec:
                    sys.exit(f"FAIL: run.json shards hold {sum(info['shards']['rows'])} rows, not {nrec}")
        print(f"1. quoted CSV, {strategy} sharding: parallel-read -np 1..4 identical to static ({nrec} rows)")

    # 2. The ambiguous split: exact, or the clear error.
    amb = os.path.join(tmp, "amb.csv")
    quoted_csv(amb, 3000, 5, stray_quote=True)
    wf = os.path.join(tmp, "wf-amb.yaml")
    workflow(wf, amb, "size")
    ref_out = os.path.join(tmp, "amb-ref")
    run(["run", wf, "--out", ref_out])
    ref = result(ref_out)
    outcomes = []
    # Also split among the threads of a rank: the same boundaries inside a rank.
    for np_, threads in ((2, None), (3, None), (4, None), (1, 2), (2, 3)):
        out = os.path.join(tmp, f"amb-{np_}-{threads}")
        p = run(["run", wf, "--out", out, "--set", "distribute.mode=parallel-read"], np_, expect=None,
                threads=threads)
        if p.returncode == 0:
            if result(out) != ref:
                sys.exit(f"FAIL: ambiguous split at -np {np_} x {threads} threads gave a different result, silently")
            outcomes.append("exact")
        elif p.returncode == 4 and "where this part of the file ends" in p.stderr \
                and "distribute.mode: static or dynamic" in p.stderr:
            outcomes.append("refused")
        else:
            sys.exit(f"FAIL: ambiguous split at -np {np_} x {threads} threads: exit {p.returncode}\n{p.stderr}")
    if "refused" not in outcomes:
        sys.exit(f"FAIL: the stray quote was never detected ({outcomes}); the case does not test the check")
    print(f"2. stray quote: {outcomes} (never a silent difference)")

    # 3. Killed in the second pass, resumed from the first pass's checkpoint.
    wf = os.path.join(tmp, "wf-kill.yaml")
    workflow(wf, data, "hash", batch_rows=300)
    # The threads of the environment, then 2 threads per rank restarted at
    # -np 1 x 3 threads: the sub-parts of each rank, another layout.
    for threads, np_restart, restart_threads in ((None, 3, None), (2, 1, 3)):
        tag = f"-{threads}" if threads else ""
        ref_out = os.path.join(tmp, f"kill-ref{tag}")
        run(["run", wf, "--out", ref_out, "--set", "distribute.mode=parallel-read"], 2, threads=threads)
        ref = result(ref_out)
        with open(os.path.join(ref_out, "run.json")) as f:
            # Units over both passes, which take the same rounds.
            units = json.load(f)["per_rank"][1]["units"] // 2
        out = os.path.join(tmp, f"kill{tag}")
        # Rank 1 takes `units` units in the first pass: crash a few into the second.
        p = run(["run", wf, "--out", out, "--set", "distribute.mode=parallel-read",
                 "--inject", f"crash:rank=1,point=round,at={units + 3}"], 2, expect=None, threads=threads)
        if p.returncode == 0:
            sys.exit("FAIL: the injected crash did not stop the run")
        p = run(["run", wf, "--out", out, "--restart", "--set", "distribute.mode=parallel-read"], np_restart,
                threads=restart_threads)
        if "resuming" not in p.stderr or result(out) != ref:
            sys.exit(f"FAIL: restart after a crash in pass 2 did not resume or differs\n{p.stderr}")
        with open(os.path.join(out, "run.json")) as f:
            if json.load(f)["restart"]["passes_restored"] != 1:
                sys.exit("FAIL: run.json does not say that one pass was restored")
        print(f"3. crash in pass 2 at -np 2 (threads: {threads or 'default'}), --restart at -np {np_restart} "
              f"(threads: {restart_threads or 'default'}): first pass restored, same bytes")

    # 4. A mid-pass checkpoint (static mode) cannot be resumed by parallel-read.
    out = os.path.join(tmp, "mid")
    p = run(["run", wf, "--out", out, "--set", "checkpoint.every_shards=5",
             "--inject", "crash:rank=1,point=round,at=6"], 2, expect=None)
    if p.returncode == 0:
        sys.exit("FAIL: the injected crash did not stop the static run")
    p = run(["run", wf, "--out", out, "--restart", "--set", "distribute.mode=parallel-read"], 2, expect=3)
    if "parallel-read cannot resume" not in p.stderr:
        sys.exit(f"FAIL: no clear message for a mid-pass checkpoint\n{p.stderr}")
    p = run(["run", wf, "--out", out, "--restart"], 2)
    if result(out) != ref:
        sys.exit("FAIL: the static restart differs")
    print("4. mid-pass checkpoint refused by parallel-read (exit 3), resumed by static mode")

    threads_per_rank(tmp, data, nrec)
    bad_records(tmp)
    shutil.rmtree(tmp, ignore_errors=True)


def read_parts(out):
    with open(os.path.join(out, "run.json")) as f:
        info = json.load(f)
    return info, [r.get("read_parts") for r in info["per_rank"]]


def threads_per_rank(tmp, data, nrec):
    pr = ["--set", "distribute.mode=parallel-read", "--set", "distribute.chunk_bytes=1000",
          "--set", "input.batch_rows=200"]
    for strategy in ("hash", "size"):
        wf = os.path.join(tmp, f"wf-{strategy}.yaml")
        ref = result(os.path.join(tmp, f"ref-{strategy}"))
        for np_ in (1, 2):
            for threads in (1, 2, 3):
                out = os.path.join(tmp, f"t-{strategy}-{np_}-{threads}")
                run(["run", wf, "--out", out] + pr, np_, threads=threads)
                if result(out) != ref:
                    sys.exit(f"FAIL: parallel-read {strategy} -np {np_} x {threads} threads differs from static")
                info, parts = read_parts(out)
                if parts != [threads] * np_:
                    sys.exit(f"FAIL: -np {np_} x {threads} threads: ranks read {parts} sub-parts")
                if sum(info["shards"]["rows"]) != nrec:
                    sys.exit(f"FAIL: -np {np_} x {threads}: shards hold {sum(info['shards']['rows'])} rows")
    print("5a. quoted CSV, hash and size sharding: -np 1, 2 x 1..3 threads identical to static")
    h5 = os.path.join(tmp, "g.h5")
    run(["gen", "--rows", "20000", "--seed", "3", "--format", "hdf5", "-o", h5])
    inputs = (("hdf5", f"{{format: hdf5, path: {h5}, group: /table, batch_rows: 700}}"),
              ("synthetic", "{format: synthetic, generator: requests, rows: 20000, seed: 3, batch_rows: 700}"))
    for name, spec in inputs:
        wf = os.path.join(tmp, f"wf-{name}.yaml")
        with open(wf, "w") as f:
            f.write(f"""name: prg
input: {spec}
shard: {{strategy: hash, shards: 7, key: user_id}}
distribute: {{mode: static, morsel_rows: 500}}
stages:
  - name: s
    agents:
      - {{agent: stats, id: latency, column: latency_ms, by: [service]}}
      - {{agent: distinct, id: users, column: user_id, by: [region]}}
      - {{agent: topk, id: ips, column: client_ip, k: 5}}
""")
        ref_out = os.path.join(tmp, f"ref-{name}")
        run(["run", wf, "--out", ref_out])
        ref = result(ref_out)
        for np_ in (1, 2):
            for threads in (1, 2, 3):
                for exchange in ("auto", "never"):
                    if exchange == "never" and np_ == 1:
                        continue
                    out = os.path.join(tmp, f"t-{name}-{np_}-{threads}-{exchange}")
                    run(["run", wf, "--out", out, "--set", "distribute.mode=parallel-read",
                         "--set", f"distribute.exchange={exchange}"], np_, threads=threads)
                    if result(out) != ref:
                        sys.exit(f"FAIL: {name} parallel-read -np {np_} x {threads} threads ({exchange}) "
                                 "differs from static")
                    info, parts = read_parts(out)
                    if parts != [threads] * np_ or info["input"]["rows"] != 20000:
                        sys.exit(f"FAIL: {name} -np {np_} x {threads}: {parts} sub-parts, "
                                 f"{info['input']['rows']} rows")
    print("5b. HDF5 and synthetic inputs: -np 1, 2 x 1..3 threads identical to static")
    # 5c. Pieces in place: size sharding of numeric columns takes the rounds'
    # pieces as views of the batches read (run.json counts them); the same
    # bytes as static mode with the views on or off, the stats kernels on or
    # off, at 1 and 2 ranks x 1 and 2 threads; a later pass that reads a
    # string column packs its pieces as before.
    wf = os.path.join(tmp, "wf-inplace.yaml")
    with open(wf, "w") as f:
        f.write(f"""name: inplace
input: {{format: hdf5, path: {h5}, group: /table, batch_rows: 700}}
shard: {{strategy: size, shards: 9}}
distribute: {{mode: static, morsel_rows: 500}}
stages:
  - name: s
    agents:
      - {{agent: stats, id: latency, column: latency_ms}}
      - {{agent: stats, id: bytes, column: bytes}}
      - {{agent: stats, id: by_status, column: latency_ms, by: [status]}}
      - {{agent: stats, id: slow, column: bytes, where: "latency_ms > 100"}}
  - name: t
    after: [s]
    agents:
      - {{agent: distinct, id: users, column: user_id, by: [region]}}
""")
    ref_out = os.path.join(tmp, "ref-inplace")
    run(["run", wf, "--out", ref_out, "--set", "input.mmap=false"])
    ref = result(ref_out)
    # (in_place, kernels, mapped HDF5 columns); the reference copies.
    combos = (("true", "1", "true"), ("true", "1", "false"), ("true", "0", "true"), ("false", "1", "true"),
              ("false", "0", "false"))
    for np_ in (1, 2):
        for threads in (1, 2):
            for in_place, simd, mmap in combos:
                out = os.path.join(tmp, f"ip-{np_}-{threads}-{in_place}-{simd}-{mmap}")
                env["SF_STATS_SIMD"] = simd
                try:
                    run(["run", wf, "--out", out, "--set", "distribute.mode=parallel-read",
                         "--set", f"distribute.in_place={in_place}", "--set", f"input.mmap={mmap}"], np_,
                        threads=threads)
                finally:
                    del env["SF_STATS_SIMD"]
                if result(out) != ref:
                    sys.exit(f"FAIL: in_place={in_place} SF_STATS_SIMD={simd} mmap={mmap} -np {np_} x {threads} "
                             "differs from static")
                with open(os.path.join(out, "run.json")) as f:
                    passes = json.load(f)["timings"]["passes"]
                viewed = [p["pieces_in_place"] for p in passes]
                # 20000 rows in rounds of 700 per sub-part: at least one
                # piece per round in the numeric pass, none in the other.
                want_min = 20000 // 700 if in_place == "true" else 0
                if viewed[1] != 0 or (viewed[0] < want_min if in_place == "true" else viewed[0] != 0):
                    sys.exit(f"FAIL: in_place={in_place} -np {np_} x {threads}: pieces in place {viewed}")
    print("5c. pieces in place: views on/off, kernels on/off, mapped or copied columns, -np 1, 2 x 1, 2 threads "
          "identical to static")


def bad_records(tmp):
    """A quoted CSV with spoiled amounts at 20%, 45%, 53% and 90% of its
    records. At 2 threads the sub-parts of -np 1 are the two halves and
    those of -np 2 the four quarters: the record at 53% is met in the first
    rounds of its sub-part, the first one (20%) rounds later."""
    data = os.path.join(tmp, "bad.csv")
    quoted_csv(data, 6000, 23)
    with open(data, newline="") as f:
        text = f.read()
    # Where each record starts (csv.reader does not say): after the header,
    # a record runs to the first CRLF outside quotes; a CRLF alone is a
    # blank line.
    pos = text.index("\r\n") + 2
    offsets = []
    buf = text[pos:]
    at = 0
    while at < len(buf):
        if buf.startswith("\r\n", at):  # a blank line
            at += 2
            continue
        offsets.append(pos + at)
        inq = False
        while at < len(buf):
            ch = buf[at]
            if ch == '"':
                inq = not inq
            elif not inq and buf.startswith("\r\n", at):
                at += 2
                break
            at += 1
    bad_line = 'plain,Oslo,x1.5,7\r\n'
    cut = [offsets[int(len(offsets) * q)] for q in (0.2, 0.45, 0.53, 0.9)]
    pieces, last = [], 0
    for c in cut:
        pieces.append(text[last:c])
        pieces.append(bad_line)
        last = c
    pieces.append(text[last:])
    text = "".join(pieces)
    with open(data, "w", newline="") as f:
        f.write(text)
    lines, at = [], text.index(bad_line)
    while at >= 0:
        lines.append(text[:at].count("\n") + 1)
        at = text.find(bad_line, at + 1)
    if len(lines) != 4:
        sys.exit(f"FAIL: the spoiled records are on lines {lines}")
    first_line, early_line = lines[0], lines[2]
    skip = ["--set", "input.on_bad_row=skip"]
    for strategy in ("hash", "size"):
        wf = os.path.join(tmp, f"wf-bad-{strategy}.yaml")
        workflow(wf, data, strategy, batch_rows=100)
        ref_out = os.path.join(tmp, f"bad-ref-{strategy}")
        run(["run", wf, "--out", ref_out] + skip)
        ref = result(ref_out)
        with open(os.path.join(ref_out, "run.json")) as f:
            ref_input = json.load(f)["input"]
        if ref_input["bad_rows"] != 4:
            sys.exit(f"FAIL: static skipped {ref_input['bad_rows']} bad rows, 4 were written")
        for np_ in (1, 2):
            out = os.path.join(tmp, f"bad-{strategy}-{np_}")
            run(["run", wf, "--out", out, "--set", "distribute.mode=parallel-read"] + skip, np_, threads=2)
            if result(out) != ref:
                sys.exit(f"FAIL: skip at -np {np_} x 2 threads ({strategy}) differs from static")
            with open(os.path.join(out, "run.json")) as f:
                got = json.load(f)["input"]
            if got["bad_rows"] != 4:
                sys.exit(f"FAIL: skip at -np {np_} x 2 threads counted {got['bad_rows']} bad rows, not 4")
            # One rank reads every sub-part: its samples are the whole file's, in file order.
            if np_ == 1 and got["bad_row_samples"] != ref_input["bad_row_samples"]:
                sys.exit(f"FAIL: bad-row samples at -np 1 x 2 threads: {got['bad_row_samples']}, "
                         f"static: {ref_input['bad_row_samples']}")
    print("6a. on_bad_row: skip at 2 threads: same result.json and 4 bad rows as static")

    def error_of(p):
        lines = [l for l in p.stderr.splitlines() if "error:" in l]
        return lines[0] if lines else ""

    for strategy in ("hash", "size"):
        wf = os.path.join(tmp, f"wf-bad-{strategy}.yaml")
        p = run(["run", wf, "--out", os.path.join(tmp, f"fail-ref-{strategy}")], expect=None)
        want = error_of(p)
        if p.returncode == 0 or f"{data}:{first_line}:" not in want:
            sys.exit(f"FAIL: static run with bad records: exit {p.returncode}, '{want}', expected line {first_line}")
        for np_ in (1, 2):
            q = run(["run", wf, "--out", os.path.join(tmp, f"fail-{strategy}-{np_}"), "--set",
                     "distribute.mode=parallel-read"], np_, expect=None, threads=2)
            if q.returncode != p.returncode or error_of(q) != want:
                sys.exit(f"FAIL: on_bad_row: fail at -np {np_} x 2 threads ({strategy}): exit {q.returncode}, "
                         f"'{error_of(q)}'; static: exit {p.returncode}, '{want}'")
    print(f"6b. on_bad_row: fail at 2 threads: line {first_line} as static (not {early_line}, met first)")



main()
