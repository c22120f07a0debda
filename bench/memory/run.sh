#!/usr/bin/env bash
# Peak memory of rank 0 and of a worker as the input grows, under the
# default distribute.memory_budget: mpirun -np 2 (one thread each) of
# bench/memory/memory.yaml (agent states that do not grow with the rows) at
# each size and distribution mode, run.json's per_rank[].peak_rss_bytes.
# Verdict per mode: rank 0's peak at the largest input within 20% of its
# peak at the smallest (flat) or not.
#
#   bench/memory/run.sh [ROWS...]             (default: 1000000 10000000 50000000)
#
# Environment (defaults in brackets):
#   SF_MODES      distribution modes ["static dynamic parallel-read"]; a mode
#                 that `shardflow validate` rejects (not built yet) is skipped
#   SF_WORKFLOW   the workflow [bench/memory/memory.yaml]
#   SF_DEMO_ROWS  also run the default workflow (inputs/demo.yaml, its own
#                 mode) at these sizes, to show agent states that grow [none]
#   SF_OUT        where the runs and memory.csv go [results/memory]
#   SHARDFLOW     the binary [shardflow on PATH, else build/*/bin/shardflow]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$repo/scripts/env.sh"
. "$repo/bench/scaling/lib.sh"
sizes=${*:-1000000 10000000 50000000}
modes=${SF_MODES:-static dynamic parallel-read}
wf=${SF_WORKFLOW:-$here/memory.yaml}
out=${SF_OUT:-results/memory}

bin=$(sf_find_shardflow)
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "bench/memory/run.sh: no shardflow binary: set SHARDFLOW, put shardflow on PATH or build one" >&2
  exit 2
fi
mkdir -p "$out/runs"
csv=$out/memory.csv
echo "workflow,mode,rows,rank0_peak_rss_bytes,rank1_peak_rss_bytes,peak_inflight_bytes,memory_budget,batch_rows,seconds,wall_seconds,run" > "$csv"

once() { # WORKFLOW NAME ROWS [--set ...]: one run, one CSV row
  local w=$1 name=$2 rows=$3 t0 t1
  shift 3
  local dir=$out/runs/$name
  rm -rf "$dir"
  t0=$(date +%s.%N)
  mpirun -np 2 --bind-to none -x OMP_NUM_THREADS=1 "$bin" run "$w" --out "$dir" --threads 1 \
    --set "input.rows=$rows" "$@" > "$dir.log" 2>&1 ||
    { echo "bench/memory/run.sh: run $name failed:" >&2; cat "$dir.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  python3 - "$dir/run.json" "$t0" "$t1" "runs/$name" >> "$csv" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
rss = {p["rank"]: p["peak_rss_bytes"] for p in r["per_rank"]}
inflight = max(p.get("peak_inflight_bytes", 0) for p in r["timings"]["passes"])
budget = (r["config"].get("distribute") or {}).get("memory_budget", "default")
print(f'{r["workflow"]},{r["distribute"]},{r["input"]["rows"]},{rss[0]},{rss.get(1, 0)},{inflight},{budget},'
      f'{r["input"]["batch_rows"]},{r["timings"]["total_seconds"]:.3f},{float(sys.argv[3]) - float(sys.argv[2]):.3f},'
      f'{sys.argv[4]}')
EOF
  tail -n 1 "$csv"
}

run_modes=
for m in $modes; do
  if sf_mode_available "$bin" "$wf" "$m"; then run_modes="$run_modes $m"
  else echo "bench/memory/run.sh: distribute.mode=$m is not accepted by this shardflow: skipped"; fi
done
echo "bench/memory/run.sh: $wf, rows $sizes, modes$run_modes, mpirun -np 2 x 1 thread, $bin"
for n in $sizes; do
  for m in $run_modes; do
    once "$wf" "$(basename "$wf" .yaml)-$m-$n" "$n" --set "distribute.mode=$m"
  done
done
for n in ${SF_DEMO_ROWS:-}; do
  once "$repo/inputs/demo.yaml" "demo-$n" "$n"
done

python3 - "$csv" <<'EOF' | tee "$out/summary.txt"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
mib = 2.0 ** 20
print(f"peak RSS under the default memory budget, mpirun -np 2 x 1 thread ({sys.argv[1]})")
print(f"{'workflow':<10}{'mode':<15}{'rows':>11}{'rank0_MiB':>10}{'rank1_MiB':>10}{'inflight_MiB':>13}"
      f"{'batch_rows':>11}{'run_s':>8}")
for r in rows:
    print(f"{r['workflow']:<10}{r['mode']:<15}{int(r['rows']):>11}{int(r['rank0_peak_rss_bytes']) / mib:>10.1f}"
          f"{int(r['rank1_peak_rss_bytes']) / mib:>10.1f}{int(r['peak_inflight_bytes']) / mib:>13.1f}"
          f"{r['batch_rows']:>11}{float(r['seconds']):>8.2f}")
print()
by = {}
for r in rows:
    by.setdefault((r["workflow"], r["mode"]), []).append(r)
for (wf, mode), rs in by.items():
    rs.sort(key=lambda r: int(r["rows"]))
    if len(rs) < 2:
        continue
    lo, hi = rs[0], rs[-1]
    r0 = int(hi["rank0_peak_rss_bytes"]) / int(lo["rank0_peak_rss_bytes"])
    r1 = int(hi["rank1_peak_rss_bytes"]) / max(1, int(lo["rank1_peak_rss_bytes"]))
    verdict = "FLAT (within 20%)" if r0 <= 1.2 else "NOT FLAT (more than 20%)"
    print(f"{wf} {mode}: rank 0 peak at {int(hi['rows']):,} rows / at {int(lo['rows']):,} rows = {r0:.2f}: {verdict};"
          f" worker {r1:.2f}")
EOF
