#!/usr/bin/env bash
# Strong and weak scaling on this machine (mpirun, no Slurm), then the
# tables, the costs that grow with the rank count, the efficiency model and
# the plots. The measuring loop is bench/scaling/measure.sh, the same one
# that slurm/strong_scaling.sbatch and slurm/weak_scaling.sbatch run.
#
#   bench/scaling/run.sh [OUTDIR]                       (default results/scaling)
#
# Environment (defaults in brackets):
#   SF_WORKFLOW       the workflow [bench/speedup.yaml: eight grouped stats
#                     over the synthetic request log, one pass]
#   SF_ROWS           strong: rows [10000000]
#   SF_CONFIGS        strong: RANKSxTHREADS ["1x1 1x2 2x1 4x1 8x1"]
#   SF_STRONG_MODES   strong: modes ["dynamic static parallel-read"]
#   SF_ROWS_PER_RANK  weak: rows per rank [5000000]
#   SF_TASKS          weak: rank counts ["1 2 4 8"], one thread each
#   SF_WEAK_MODES     weak: modes ["parallel-read"]
#   SF_REPEATS        runs per configuration, interleaved; medians [3]
#   SHARDFLOW         the binary [shardflow on PATH, else build/*/bin/shardflow]
# A mode that `shardflow validate` rejects (not built yet) runs as dynamic
# instead (SF_MODE_FALLBACK), and the CSVs' mode column says what ran.
# Writes OUTDIR/strong.csv, weak.csv, costs.csv, strong.png, weak.png,
# summary.txt (the printed tables) and every run's files under OUTDIR/runs/strong
# and OUTDIR/runs/weak.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$repo/scripts/env.sh"
. "$here/lib.sh"
out=${1:-results/scaling}
wf=${SF_WORKFLOW:-$repo/bench/speedup.yaml}
export SF_REPEATS=${SF_REPEATS:-3}

bin=$(sf_find_shardflow)
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "bench/scaling/run.sh: no shardflow binary: set SHARDFLOW, put shardflow on PATH or build one" \
       "(cmake --preset release && cmake --build --preset release)" >&2
  exit 2
fi
export SHARDFLOW=$bin
py=/usr/bin/python3
if ! $py -c "import matplotlib" 2>/dev/null; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "bench/scaling/run.sh: installing python3-matplotlib for the plots"
    apt-get install -y -q python3-matplotlib >/dev/null || true
  fi
fi

mkdir -p "$out"
# Other work on the machine shows in the load average and in the spread of
# the repeats (tables: spread = (slowest - fastest) / median).
load0=$(cut -d' ' -f1-3 /proc/loadavg)
SF_MODES=${SF_STRONG_MODES:-"dynamic static parallel-read"} SF_RUNS_DIR=runs/strong \
  "$here/measure.sh" strong "$wf" "$out"
SF_MODES=${SF_WEAK_MODES:-parallel-read} SF_THREADS=1 SF_RUNS_DIR=runs/weak \
  "$here/measure.sh" weak "$wf" "$out"
load1=$(cut -d' ' -f1-3 /proc/loadavg)
{
  echo "bench/scaling/run.sh: $wf on $(nproc) cores, $bin; load average $load0 before, $load1 after"
  echo
  python3 "$here/summarize.py" tables "$out"
  python3 "$here/summarize.py" costs "$out"
  python3 "$here/summarize.py" model "$out"
} | tee "$out/summary.txt"
if $py -c "import matplotlib" 2>/dev/null; then
  $py "$here/plot.py" "$out"
else
  echo "bench/scaling/run.sh: no matplotlib for $py (apt-get install python3-matplotlib): no plots" >&2
fi
