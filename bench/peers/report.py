"""Prints bench/peers' tables (Markdown) from the files run.sh left in its
output folder: NAME.times ("wall own [pass]" per run), verdicts.json,
duckdb.json and dask.json (versions, methods), h5_bytes and stream.txt.

usage: report.py OUT_DIR --rows N --csv CSV --mode MODE [--mode-note TEXT] [--load START END]
Exit status 1 when a check failed (the table is printed first either way).
"""
import argparse
import json
import os
import platform
import statistics
import sys


def times(out, name):
    path = os.path.join(out, f"{name}.times")
    if not os.path.exists(path):
        return None
    cols = list(zip(*([float(x) for x in line.split()] for line in open(path) if line.strip())))
    return cols  # wall, own total; for shardflow also the first pass and rank 0's reading time


def load_json(out, name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def fmt_rate(x):
    return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.0f} k"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--csv", required=True)
    ap.add_argument("--mode", required=True)
    ap.add_argument("--mode-note", default="")
    ap.add_argument("--load", nargs=2, default=None)
    a = ap.parse_args()

    verdicts = load_json(a.out, "verdicts.json")
    duck = load_json(a.out, "duckdb.json")
    dask = load_json(a.out, "dask.json")
    csv_bytes = os.path.getsize(a.csv)
    base = times(a.out, "sf_np2")
    base_med = statistics.median(base[0]) if base else None

    print(f"bench/peers: {a.rows:,} rows, CSV {csv_bytes / 1e9:.2f} GB, {os.cpu_count()} cores ({cpu_model()})")
    if a.load:
        print(f"load average (1, 5, 15 min) at start {a.load[0]}, at end {a.load[1]}")
    print(f"shardflow distribute.mode: {a.mode}" + (f" ({a.mode_note})" if a.mode_note else ""))
    print()
    print("| system | configuration | runs | wall median (s) | min | max | rows/s | vs shardflow -np 2 | own time median (s) | check |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    configs = [
        ("sf_np2", "shardflow", f"`mpirun -np 2`, 1 thread per rank, {a.mode}"),
        ("sf_1x2", "shardflow", f"`mpirun -np 1 --bind-to none`, 2 threads, {a.mode}"),
        ("duckdb", f"DuckDB {duck.get('version', '?')}",
         f"node, `threads=2`, read_csv; quantiles {duck.get('quantiles', '?')}; distinct exact"),
        ("dask", f"Dask {dask.get('version', '?')}",
         "LocalCluster, 2 worker processes x 1 thread; quantiles exact (grouped apply); distinct exact"),
    ]
    ratios = {}
    for name, system, conf in configs:
        t = times(a.out, name)
        if not t:
            print(f"| {system} | {conf} | 0 | - | - | - | - | - | - | not run |")
            continue
        med = statistics.median(t[0])
        ratio = med / base_med if base_med else float("nan")
        ratios[name] = ratio
        own = statistics.median(t[1])
        print(f"| {system} | {conf} | {len(t[0])} | {med:.2f} | {min(t[0]):.2f} | {max(t[0]):.2f} | "
              f"{fmt_rate(a.rows / med)} | {ratio:.2f} | {own:.2f} | {verdicts.get(name, '?')} |")
    print()
    print("wall: the whole command (mpirun, node or python start-up included); own time: shardflow's "
          "run.json total_seconds, DuckDB's and Dask's query time (Dask's excludes starting the cluster).")
    if "duckdb" in ratios:
        r = ratios["duckdb"]
        print(f"DuckDB / shardflow = {r:.2f} (target >= 1.0, aim 2.0): "
              f"{'met' if r >= 2.0 else 'target met, aim not' if r >= 1.0 else 'NOT met'}")
    if "dask" in ratios:
        r = ratios["dask"]
        print(f"Dask / shardflow = {r:.2f} (target >= 10, aim 20): "
              f"{'met' if r >= 20 else 'target met, aim not' if r >= 10 else 'NOT met'}")

    # HDF5 variant against the copy loop.
    stream = {}
    for line in open(os.path.join(a.out, "stream.txt")):
        f = dict(kv.split("=", 1) for kv in line.split()[1:])
        stream[int(f["threads"])] = (float(f["gbps"]), int(f["mib"]))
    scanned = int(open(os.path.join(a.out, "h5_bytes")).read())
    copy2 = stream.get(2, (float("nan"), 0))[0]
    print()
    print(f"HDF5 variant: ungrouped stats of latency_ms, bytes, status ({scanned / 1e9:.3f} GB of column data "
          f"and null masks scanned per pass); STREAM-style copy (a[i] = b[i], {stream.get(1, (0, 0))[1]} MiB arrays, "
          f"best of 10, read + write bytes): {stream.get(1, (float('nan'),))[0]:.2f} GB/s with 1 thread, "
          f"{copy2:.2f} GB/s with 2 threads")
    print()
    print("| configuration | runs | pass median (s) | rank 0 reading (s) | wall median (s) | rows/s (pass) | "
          "scan GB/s (pass) | scan GB/s (wall) | % of 2-thread copy (pass) | check |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    best_pct = 0.0
    for name, conf in (("h5_np2", f"`mpirun -np 2`, 1 thread per rank, {a.mode}"),
                       ("h5_1x2", f"`mpirun -np 1 --bind-to none`, 2 threads, {a.mode}")):
        t = times(a.out, name)
        if not t:
            continue
        pass_med, wall_med = statistics.median(t[2]), statistics.median(t[0])
        rate, wrate = scanned / pass_med / 1e9, scanned / wall_med / 1e9
        pct = 100.0 * rate / copy2
        best_pct = max(best_pct, pct)
        print(f"| {conf} | {len(t[0])} | {pass_med:.3f} | {statistics.median(t[3]):.3f} | {wall_med:.3f} | "
              f"{fmt_rate(a.rows / pass_med)} | "
              f"{rate:.2f} | {wrate:.2f} | {pct:.0f}% | {verdicts.get(name, '?')} |")
    print()
    print(f"scan rate vs memory bandwidth (target >= 50% of the 2-thread copy): best {best_pct:.0f}%: "
          f"{'met' if best_pct >= 50 else 'NOT met'}")
    print("Medians on a shared 2-core machine are noisy; compare systems within one run of the script.")
    failed = [k for k, v in verdicts.items() if v != "pass"]
    return 1 if failed or not verdicts else 0


if __name__ == "__main__":
    sys.exit(main())
