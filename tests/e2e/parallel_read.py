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
   first pass (at another rank count) and gives the same bytes.
4. A checkpoint that stopped inside a pass (written in static mode) is
   refused by parallel-read with a clear message (exit 3).

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


def run(args, np_=1, expect=0):
    cmd = [MPIEXEC, "-np", str(np_), "--oversubscribe", "--bind-to", "none", BINARY] + args
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
    for np_ in (2, 3, 4):
        out = os.path.join(tmp, f"amb-{np_}")
        p = run(["run", wf, "--out", out, "--set", "distribute.mode=parallel-read"], np_, expect=None)
        if p.returncode == 0:
            if result(out) != ref:
                sys.exit(f"FAIL: ambiguous split at -np {np_} gave a different result, silently")
            outcomes.append("exact")
        elif p.returncode == 4 and "where this rank's part of the file ends" in p.stderr \
                and "distribute.mode: static or dynamic" in p.stderr:
            outcomes.append("refused")
        else:
            sys.exit(f"FAIL: ambiguous split at -np {np_}: exit {p.returncode}\n{p.stderr}")
    if "refused" not in outcomes:
        sys.exit(f"FAIL: the stray quote was never detected ({outcomes}); the case does not test the check")
    print(f"2. stray quote: {outcomes} (never a silent difference)")

    # 3. Killed in the second pass, resumed from the first pass's checkpoint.
    wf = os.path.join(tmp, "wf-kill.yaml")
    workflow(wf, data, "hash", batch_rows=300)
    ref_out = os.path.join(tmp, "kill-ref")
    run(["run", wf, "--out", ref_out, "--set", "distribute.mode=parallel-read"], 2)
    ref = result(ref_out)
    with open(os.path.join(ref_out, "run.json")) as f:
        # Units over both passes, which take the same rounds.
        units = json.load(f)["per_rank"][1]["units"] // 2
    out = os.path.join(tmp, "kill")
    # Rank 1 takes `units` units in the first pass: crash a few into the second.
    p = run(["run", wf, "--out", out, "--set", "distribute.mode=parallel-read",
             "--inject", f"crash:rank=1,point=round,at={units + 3}"], 2, expect=None)
    if p.returncode == 0:
        sys.exit("FAIL: the injected crash did not stop the run")
    p = run(["run", wf, "--out", out, "--restart", "--set", "distribute.mode=parallel-read"], 3)
    if "resuming" not in p.stderr or result(out) != ref:
        sys.exit(f"FAIL: restart after a crash in pass 2 did not resume or differs\n{p.stderr}")
    with open(os.path.join(out, "run.json")) as f:
        if json.load(f)["restart"]["passes_restored"] != 1:
            sys.exit("FAIL: run.json does not say that one pass was restored")
    print("3. crash in pass 2 at -np 2, --restart at -np 3: first pass restored, same bytes")

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
    shutil.rmtree(tmp, ignore_errors=True)


main()
