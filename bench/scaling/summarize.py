#!/usr/bin/env python3
"""Tables of the scaling studies, from the CSVs of bench/scaling/measure.sh
and the run.json of every run. Standard library only (any python3).

  summarize.py row RUN_JSON T0 T1 OVERSUBSCRIBED REPEAT RUN LOAD
      one CSV row of measure.sh (T0, T1: the wall clock around mpirun)
  summarize.py tables OUTDIR
      OUTDIR/strong.csv and weak.csv (either may be missing): medians over
      the repeats, speedup and efficiency, spread of the repeats
  summarize.py costs OUTDIR
      writes OUTDIR/costs.csv (one row per run: the costs that grow with the
      rank count) and prints their medians per configuration
  summarize.py model OUTDIR
      efficiency at 2, 64, 1024 and 8192 ranks from the measured costs
      (see bench/scaling/README.md for the model)
"""
import csv
import json
import math
import os
import statistics
import sys
import textwrap


def row(argv):
    path, t0, t1, over, rep, run, load = argv
    r = json.load(open(path))
    secs = r["timings"]["total_seconds"]
    rows = r["input"]["rows"]
    wall = float(t1) - float(t0)
    print(f'{r["ranks"]},{r["threads"]},{rows},{secs:.6f},{rows / secs:.1f},{wall:.3f},{over},'
          f'{r.get("distribute", "?")},{rep},{run},{load}')


def read_csv(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def groups(rows, key):
    """Rows grouped by key(row), in the order keys first appear."""
    out = {}
    for r in rows:
        out.setdefault(key(r), []).append(r)
    return out


def med(rows, col):
    return statistics.median(float(r[col]) for r in rows)


def spread(rows, col):
    """(max - min) / median of a column over the repeats, in percent."""
    v = [float(r[col]) for r in rows]
    m = statistics.median(v)
    return 100.0 * (max(v) - min(v)) / m if m > 0 else 0.0


def load(rows):
    """Median 1-minute load average at the runs' starts (nan when not recorded)."""
    v = [float(r.get("load_average") or "nan") for r in rows]
    return statistics.median(v) if v else float("nan")


def config_key(r):
    return (r.get("mode", "?"), int(r["tasks"]), int(r["threads"]))


def tables(argv):
    out = argv[0]
    for study in ("strong", "weak"):
        rows = read_csv(os.path.join(out, f"{study}.csv"))
        if not rows:
            continue
        print(f"{study} scaling ({os.path.join(out, study + '.csv')}; medians of the repeats;"
              f" speedup and efficiency from the engine's time, {'T(1x1)/T' if study == 'strong' else 'weak: T(1)/T(P)'})")
        print(f"{'mode':<14}{'ranks x thr':>12}{'rows':>11}{'run_s':>9}{'wall_s':>9}{'rows/s':>10}"
              f"{'speedup':>9}{'effic.':>8}{'spread':>8}{'reps':>5}{'load':>6}  note")
        by = groups(rows, config_key)
        for (mode, ranks, threads), rs in by.items():
            base = by.get((mode, 1, 1)) or by.get((mode, 1, threads))
            t = med(rs, "seconds")
            tb = med(base, "seconds") if base else float("nan")
            cores = ranks * threads
            if study == "strong":
                speed = tb / t
                eff = speed / cores
            else:
                # Weak: P times the rows of the base in the same time is ideal.
                nb = med(base, "rows") if base else float("nan")
                speed = (med(rs, "rows") / t) / (nb / tb)
                eff = tb / t
            note = "oversubscribed" if any(r["oversubscribed"] == "1" for r in rs) else ""
            print(f"{mode:<14}{f'{ranks} x {threads}':>12}{int(med(rs, 'rows')):>11}{t:>9.3f}"
                  f"{med(rs, 'wall_seconds'):>9.3f}{med(rs, 'rows_per_second') / 1e6:>9.2f}M"
                  f"{speed:>9.3f}{eff:>8.3f}{spread(rs, 'seconds'):>7.0f}%{len(rs):>5}{load(rs):>6.1f}  {note}")
        print()


COST_COLUMNS = ["study", "mode", "tasks", "threads", "rows", "repeat", "oversubscribed", "seconds",
                "wall_seconds", "startup_seconds", "passes", "pass_seconds", "batch_rows", "rounds",
                "path_rounds", "round_seconds", "read_seconds", "route_seconds", "rank0_read_route_per_round",
                "rank0_process_seconds", "reduce_seconds", "reduce_messages", "reduce_internode_messages",
                "reduce_bytes", "units_sent", "bytes_sent", "peak_inflight_bytes", "max_worker_wait_seconds",
                "rank0_peak_rss_bytes", "max_worker_peak_rss_bytes"]


def run_costs(study, r, rj):
    """The costs of one run that grow with the rank count, summed over its passes."""
    passes = rj["timings"].get("passes", [])
    rows = rj["input"]["rows"]
    batch = rj["input"].get("batch_rows") or 0
    rounds = len(passes) * (math.ceil(rows / batch) if batch else 0)
    # Rounds one after the other on the busiest path: rank 0 reads every
    # round in static and dynamic mode; in parallel-read mode every rank
    # reads the rounds of its own part.
    mode = r.get("mode", rj.get("distribute", "?"))
    if mode == "parallel-read" and batch:
        path_rounds = len(passes) * math.ceil(rows / (rj["ranks"] * batch))
    else:
        path_rounds = rounds

    def tot(key):
        return sum(p.get(key, 0) or 0 for p in passes)

    def red(key):
        return sum((p.get("reduce") or {}).get(key, 0) or 0 for p in passes)

    per = rj.get("per_rank", [])
    workers = [p for p in per if p.get("rank") != 0]
    rank0 = next((p for p in per if p.get("rank") == 0), {})
    pass_s = tot("seconds")
    rr = tot("read_seconds") + tot("route_seconds")
    return {
        "study": study, "mode": mode, "tasks": rj["ranks"],
        "threads": rj["threads"], "rows": rows, "repeat": r.get("repeat", 1),
        "oversubscribed": r["oversubscribed"], "seconds": float(r["seconds"]),
        "wall_seconds": float(r["wall_seconds"]),
        "startup_seconds": float(r["wall_seconds"]) - float(r["seconds"]),
        "passes": len(passes), "pass_seconds": pass_s, "batch_rows": batch, "rounds": rounds,
        "path_rounds": path_rounds, "round_seconds": pass_s / path_rounds if path_rounds else 0.0,
        "read_seconds": tot("read_seconds"), "route_seconds": tot("route_seconds"),
        "rank0_read_route_per_round": rr / path_rounds if path_rounds else 0.0,
        "rank0_process_seconds": tot("rank0_process_seconds"), "reduce_seconds": tot("reduce_seconds"),
        "reduce_messages": red("messages"), "reduce_internode_messages": red("internode_messages"),
        "reduce_bytes": red("bytes"), "units_sent": tot("units_sent"), "bytes_sent": tot("bytes_sent"),
        "peak_inflight_bytes": max([p.get("peak_inflight_bytes", 0) or 0 for p in passes] or [0]),
        "max_worker_wait_seconds": max([w.get("wait_seconds", 0) or 0 for w in workers] or [0]),
        "rank0_peak_rss_bytes": rank0.get("peak_rss_bytes", 0),
        "max_worker_peak_rss_bytes": max([w.get("peak_rss_bytes", 0) or 0 for w in workers] or [0]),
    }


def load_costs(out):
    """Per-run costs of every run listed in OUTDIR/strong.csv and weak.csv."""
    costs = []
    for study in ("strong", "weak"):
        for r in read_csv(os.path.join(out, f"{study}.csv")):
            path = os.path.join(out, r["run"], "run.json") if r.get("run") else None
            if path and os.path.exists(path):
                costs.append(run_costs(study, r, json.load(open(path))))
    return costs


def costs(argv):
    out = argv[0]
    cs = load_costs(out)
    path = os.path.join(out, "costs.csv")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COST_COLUMNS)
        w.writeheader()
        for c in cs:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in c.items()})
    print(f"costs that grow with the rank count ({path}; medians of the repeats; per pass summed;"
          " round = input.batch_rows rows)")
    print(f"{'study':<7}{'mode':<14}{'P x T':>6}{'rows':>10}{'rounds':>7}{'on_path':>8}{'round_ms':>9}{'r0_rd+rt':>9}"
          f"{'reduce_ms':>10}{'red_msg':>8}{'red_KB':>8}{'units':>6}{'wait_s':>7}{'start_s':>8}"
          f"{'r0_MiB':>7}{'wk_MiB':>7}")
    by = groups(cs, lambda c: (c["study"], c["mode"], c["tasks"], c["threads"]))
    for (study, mode, p, t), rs in by.items():
        def m(k):
            return statistics.median(float(c[k]) for c in rs)
        print(f"{study:<7}{mode:<14}{f'{p}x{t}':>6}{int(m('rows')):>10}{int(m('rounds')):>7}{int(m('path_rounds')):>8}"
              f"{1e3 * m('round_seconds'):>9.2f}{1e3 * m('rank0_read_route_per_round'):>9.2f}"
              f"{1e3 * m('reduce_seconds'):>10.2f}{int(m('reduce_messages')):>8}{m('reduce_bytes') / 1e3:>8.1f}"
              f"{int(m('units_sent')):>6}{m('max_worker_wait_seconds'):>7.2f}{m('startup_seconds'):>8.2f}"
              f"{m('rank0_peak_rss_bytes') / 2**20:>7.0f}{m('max_worker_peak_rss_bytes') / 2**20:>7.0f}")
    print("(rounds: input rows / batch_rows per pass; on_path: rounds one after the other on one rank (parallel-read:"
          " each rank's own); round_ms: pass time / on_path; r0_rd+rt: rank 0's read and route time per round in ms;"
          " wait_s: the longest a worker waited for work; start_s: wall - engine time, mpirun's start-up)")
    print()


def model_time(mode, p, n, co, shards=None):
    """Modelled seconds of a run of n rows on p ranks x 1 thread (shards: K,
    default the workflow's), and the largest term that does not shrink as 1/p."""
    k = shards or co["K"]
    if p == 1:
        return co["F"] + n * (co["r"] + co["c"]), "-"
    lvl = math.ceil(math.log2(p))
    rounds = math.ceil(n / co["batch"])
    if mode == "dynamic":
        # Units of at least morsel_rows rows: at most U ranks have work.
        busy = min(p, max(1, n // co["morsel"]))
        msgs = 2 * min(rounds * 2 * p, max(1, n // co["morsel"]))   # a request and a unit each
        work = max(n * co["r"], n * (co["r"] + co["c"]) / busy)
    elif mode == "static":
        # Shard s goes to rank s mod P: at most K ranks have work, and rank
        # 0 sends one unit per busy rank per round.
        busy = min(p, k)
        msgs = rounds * (busy - 1)
        work = max(n * co["r"], n * (co["r"] + co["c"]) / busy)
    else:
        # parallel-read: every rank reads and routes its own rows and sends
        # each other shard owner its pieces, every round.
        busy = min(p, k)
        msgs = math.ceil(n / (p * co["batch"])) * (busy - 1)
        work = n * co["r"] / p + n * co["c"] / busy
    # The terms that do not shrink as 1/P (or grow with P): the largest
    # one is printed with the efficiency.
    terms = {"fixed part F": co["F"],
             "rank 0 reads all rows": (n * co["r"]) if mode != "parallel-read" and work == n * co["r"] else 0.0,
             f"only {busy} ranks have work": work if busy < p else 0.0,
             "messages per round": msgs * co["alpha"],
             "reduction levels": lvl * co["t_red"]}
    big = max(terms, key=terms.get)
    return co["F"] + work + msgs * co["alpha"] + lvl * co["t_red"], big


def model(argv):
    """Efficiency at P ranks x 1 thread, from the fastest 1 x 1 and 2 x 1
    strong runs of each mode (the repeats least disturbed by other work):

      T(P) = F + W(P) + M(P) alpha + ceil(log2 P) t_red
      rank 0 reads (static, dynamic): W = max(N r, N (r + c) / B)
      each rank reads its part (parallel-read): W = N r / P + N c / B

    F: the fixed part of a run (load, schema, plan, write the result); r:
    read and route per row; c: the rest of the pass per row (agents,
    packing); t_red: one reduction level (encode, one message, one merge of
    a rank state, the agreement), from the 2 x 1 runs; B: ranks that get
    work, P, but at most K (shards; static and parallel-read give shard s to
    rank s mod P) or U = N / distribute.morsel_rows (dynamic units); M:
    messages on the busiest rank's path (static: (B - 1) per round from rank
    0; parallel-read: (B - 1) per round of its own rows from every rank;
    dynamic: a request and a unit per unit); alpha: the cost of one message,
    not measured here (one machine, shared memory): SF_ALPHA_US, default 2
    microseconds, a typical inter-node MPI latency. A round is
    input.batch_rows rows. Strong: N fixed, E = T(1) / (P T(P)). Weak: N =
    P N1 (N1 rows per rank), E = T(1) / T(P). mpirun's start-up (wall - engine
    time) is left out; it grows with P as well."""
    out = argv[0]
    cs = load_costs(out)
    strong = [c for c in cs if c["study"] == "strong"]
    if not strong:
        print("model: no strong scaling runs")
        return
    one = groups([c for c in strong if c["tasks"] == 1 and c["threads"] == 1], lambda c: c["mode"])
    two = groups([c for c in strong if c["tasks"] == 2 and c["threads"] == 1], lambda c: c["mode"])
    weak1 = [c for c in cs if c["study"] == "weak" and c["tasks"] == 1]
    cfg = {}
    try:
        first = read_csv(os.path.join(out, "strong.csv"))[0]["run"]
        cfg = json.load(open(os.path.join(out, first, "run.json"))).get("config", {})
    except (OSError, ValueError, IndexError, KeyError):
        pass
    alpha = float(os.environ.get("SF_ALPHA_US", "2")) * 1e-6
    print(__doc_model__)
    for mode, rs in one.items():
        best = min(rs, key=lambda c: c["seconds"])
        n = best["rows"]
        co = {"F": best["seconds"] - best["pass_seconds"],
              "r": (best["read_seconds"] + best["route_seconds"]) / n,
              "c": (best["pass_seconds"] - best["read_seconds"] - best["route_seconds"]) / n,
              "t_red": min(x["reduce_seconds"] for x in two[mode]) if mode in two else 0.0,
              "K": int((cfg.get("shard") or {}).get("shards") or 64),
              "morsel": int((cfg.get("distribute") or {}).get("morsel_rows") or 16384),
              "batch": int(best["batch_rows"] or 65536), "alpha": alpha}
        n1 = weak1[0]["rows"] if weak1 else n
        t1 = model_time(mode, 1, n, co)[0]
        tw1 = model_time(mode, 1, n1, co)[0]
        print(f"mode {mode}: F = {co['F']:.3f} s, r = {1e9 * co['r']:.0f} ns/row, c = {1e9 * co['c']:.0f} ns/row,"
              f" t_red = {1e3 * co['t_red']:.2f} ms, K = {co['K']}, morsel_rows = {co['morsel']},"
              f" batch_rows = {co['batch']}, alpha = {1e6 * alpha:g} us; strong N = {n}, weak N1 = {n1}")
        if mode in two:
            state = statistics.median(x["reduce_bytes"] for x in two[mode])
            sent = statistics.median(x["bytes_sent"] / x["rows"] for x in two[mode])
            e2 = statistics.median(x["seconds"] for x in rs) / (2 * statistics.median(x["seconds"] for x in two[mode]))
            print(f"  measured at 2 x 1 (medians): efficiency {e2:.3f}; model {t1 / (2 * model_time(mode, 2, n, co)[0]):.3f};"
                  f" {state / 1e3:.1f} KB per rank state; {sent:.1f} bytes per row sent between ranks")
        print(f"  strong (N rows) and weak (N1 rows per rank) efficiency with the workflow's K = {co['K']} shards,"
              " and with K >= P shards; the largest term that does not shrink as 1/P")
        print(f"  {'P':>6}{'strong':>8}{'K>=P':>8}  {'(K >= P) largest term':<28}{'weak':>8}{'K>=P':>8}"
              "  (K >= P) largest term")
        for p in (2, 64, 1024, 8192):
            ts = model_time(mode, p, n, co)[0]
            tsk, bs = model_time(mode, p, n, co, max(p, co["K"]))
            tw = model_time(mode, p, p * n1, co)[0]
            twk, bw = model_time(mode, p, p * n1, co, max(p, co["K"]))
            print(f"  {p:>6}{t1 / (p * ts):>8.4f}{t1 / (p * tsk):>8.4f}  {bs:<28}{tw1 / tw:>8.4f}{tw1 / twk:>8.4f}"
                  f"  {bw}")
        print()


__doc_model__ = "model: " + textwrap.dedent("    " + model.__doc__).strip()


def main():
    cmds = {"row": row, "tables": tables, "costs": costs, "model": model}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    cmds[sys.argv[1]](sys.argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
