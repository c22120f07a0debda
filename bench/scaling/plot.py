#!/usr/bin/python3
"""Plots of the scaling studies: OUTDIR/strong.png and OUTDIR/weak.png from
OUTDIR/strong.csv and OUTDIR/weak.csv (bench/scaling/measure.sh), each with
three panels: time, speedup and efficiency, one line per distribution mode.

  /usr/bin/python3 bench/scaling/plot.py [OUTDIR]      (default results/scaling)

Needs matplotlib (Debian: apt-get install python3-matplotlib). Points are
medians of the repeats with bars from the fastest to the slowest; the
engine's time (run.json total_seconds) is solid, the whole mpirun command
dashed; oversubscribed configurations (more ranks x threads than CPUs) are
drawn hollow on a grey background, because they measure sharing, not
scaling. Strong: speedup T(1x1)/T, efficiency speedup / (ranks x threads).
Weak: speedup P T(1)/T(P) (rows per second against one rank), efficiency
T(1)/T(P)."""
import csv
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def summarize(rows):
    """{mode: [(label, cores, over, t_med, t_min, t_max, wall_med, rows_med)]} in CSV order."""
    by = {}
    for r in rows:
        by.setdefault(r.get("mode", "?"), {}).setdefault((int(r["tasks"]), int(r["threads"])), []).append(r)
    out = {}
    for mode, cfgs in by.items():
        pts = []
        for (ranks, threads), rs in cfgs.items():
            t = [float(r["seconds"]) for r in rs]
            pts.append((f"{ranks}x{threads}", ranks * threads, any(r["oversubscribed"] == "1" for r in rs),
                        statistics.median(t), min(t), max(t),
                        statistics.median(float(r["wall_seconds"]) for r in rs),
                        statistics.median(float(r["rows"]) for r in rs)))
        out[mode] = pts
    return out


def plot(study, rows, path):
    data = summarize(rows)
    labels = []
    for pts in data.values():
        for p in pts:
            if p[0] not in labels:
                labels.append(p[0])
    # Order the x axis by cores, then ranks (1x2 before 2x1).
    labels.sort(key=lambda s: (int(s.split("x")[0]) * int(s.split("x")[1]), int(s.split("x")[0])))
    xs = {s: i for i, s in enumerate(labels)}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    over = sorted({xs[p[0]] for pts in data.values() for p in pts if p[2]})
    for ax in axes:
        for i in over:
            ax.axvspan(i - 0.5, i + 0.5, color="0.92", zorder=0)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels)
        ax.set_xlabel("ranks x threads" + (" (grey: oversubscribed)" if over else ""))
        ax.grid(True, alpha=0.3)
    for k, (mode, pts) in enumerate(data.items()):
        color = f"C{k}"
        pts = sorted(pts, key=lambda p: xs[p[0]])
        base = next((p for p in pts if p[0] == "1x1"), pts[0])
        x = [xs[p[0]] for p in pts]
        t = [p[3] for p in pts]
        if study == "strong":
            speed = [base[3] / p[3] for p in pts]
            eff = [s / p[1] for s, p in zip(speed, pts)]
        else:
            speed = [(p[7] / p[3]) / (base[7] / base[3]) for p in pts]
            eff = [base[3] / p[3] for p in pts]
        axes[0].errorbar(x, t, yerr=[[p[3] - p[4] for p in pts], [p[5] - p[3] for p in pts]], color=color,
                         marker="o", capsize=3, label=f"{mode}: engine (run.json)")
        axes[0].plot(x, [p[6] for p in pts], color=color, linestyle="--", marker=".",
                     label=f"{mode}: whole mpirun")
        axes[1].plot(x, speed, color=color, marker="o", label=mode)
        axes[2].plot(x, eff, color=color, marker="o", label=mode)
        for ax, ys in ((axes[1], speed), (axes[2], eff)):
            hollow = [(xi, yi) for xi, yi, p in zip(x, ys, pts) if p[2]]
            if hollow:
                ax.plot([h[0] for h in hollow], [h[1] for h in hollow], linestyle="none", marker="o",
                        markerfacecolor="white", markeredgecolor=color)
    # Ideal speedup: the cores used, up to the CPUs there are (the most
    # cores of a configuration that is not oversubscribed).
    cores = [int(s.split("x")[0]) * int(s.split("x")[1]) for s in labels]
    cpus = max([p[1] for pts in data.values() for p in pts if not p[2]] or [max(cores)])
    if study == "strong":
        axes[1].plot(range(len(labels)), [min(c, cpus) for c in cores], color="0.5", linestyle=":",
                     label=f"ideal on {cpus} CPUs")
    else:
        ranks = [int(s.split("x")[0]) for s in labels]
        axes[1].plot(range(len(labels)), [min(r, cpus) for r in ranks], color="0.5", linestyle=":",
                     label=f"ideal on {cpus} CPUs")
    # Ideal efficiency: 1 up to the CPUs there are, then CPUs / cores used
    # (strong) or CPUs / ranks (weak, one thread per rank).
    used = cores if study == "strong" else [int(s.split("x")[0]) for s in labels]
    axes[2].plot(range(len(labels)), [min(1.0, cpus / u) for u in used], color="0.5", linestyle=":",
                 label=f"ideal on {cpus} CPUs")
    axes[0].set_ylabel("seconds (median; bars: fastest to slowest)")
    axes[0].set_ylim(bottom=0)
    axes[1].set_ylabel("speedup T(1x1) / T" if study == "strong" else "scaled speedup P T(1) / T(P)")
    axes[2].set_ylabel("efficiency speedup / cores" if study == "strong" else "efficiency T(1) / T(P)")
    axes[2].set_ylim(0, 1.2)
    for ax in axes:
        ax.legend(fontsize=8)
    r0 = rows[0]
    what = f"{int(float(r0['rows'])):,} rows" if study == "strong" else \
        f"{int(float(r0['rows']) / int(r0['tasks'])):,} rows per rank"
    axes[0].set_title(f"{study} scaling: time")
    axes[1].set_title("speedup")
    axes[2].set_title("efficiency")
    fig.suptitle(f"shardflow {study} scaling, {what}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"plot.py: wrote {path}")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "results/scaling"
    done = 0
    for study in ("strong", "weak"):
        rows = read(os.path.join(out, f"{study}.csv"))
        if rows:
            plot(study, rows, os.path.join(out, f"{study}.png"))
            done += 1
    if not done:
        print(f"plot.py: no strong.csv or weak.csv in {out}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
