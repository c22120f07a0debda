#!/usr/bin/env bash
# The measuring loop of the scaling studies, shared by bench/scaling/run.sh
# (local mpirun) and slurm/strong_scaling.sbatch, slurm/weak_scaling.sbatch.
#
#   bench/scaling/measure.sh strong|weak [WORKFLOW] [OUTDIR] [shardflow run options...]
#
# strong: the same input (SF_ROWS rows) at every RANKSxTHREADS of SF_CONFIGS.
# weak:   SF_ROWS_PER_RANK x ranks rows at every rank count of SF_TASKS, with
#         SF_THREADS threads per rank; ideally the time stays flat.
#
# Environment (defaults in brackets):
#   SF_ROWS           strong: input.rows of every run [10000000]
#   SF_CONFIGS        strong: RANKSxTHREADS list ["1x1 1x2 2x1 4x1 8x1"]
#   SF_ROWS_PER_RANK  weak: rows per rank [5000000]
#   SF_TASKS          weak: rank counts ["1 2 4 8"]
#   SF_THREADS        weak: threads per rank [SLURM_CPUS_PER_TASK, else 1]
#   SF_REPEATS        runs per configuration [3]; interleaved: every
#                     configuration once, then again, so that the machine's
#                     drift affects all of them alike
#   SF_MODES          distribution modes, each `workflow` (the workflow's own
#                     distribute.mode), static, dynamic or parallel-read
#                     [strong: workflow; weak: parallel-read]
#   SF_MODE_FALLBACK  used instead of a mode that `shardflow validate`
#                     rejects (not built yet) [dynamic]
#   SF_CPUS           CPUs that count as not oversubscribed [the Slurm
#                     allocation's tasks x CPUs per task, else nproc]
#   SHARDFLOW         the binary [shardflow on PATH, else build/*/bin/shardflow
#                     of the submission directory or this repository]
#   SF_RUNS_DIR       where the runs' files go, relative to OUTDIR [runs]
#
# Output: OUTDIR/STUDY.csv (strong.csv or weak.csv), one row per run:
#   tasks,threads,rows,seconds,rows_per_second,wall_seconds,oversubscribed,mode,repeat,run,load_average
# seconds is run.json's timings.total_seconds (the engine's time, without
# MPI start-up); wall_seconds is the whole mpirun command; oversubscribed=1
# marks runs with more ranks x threads than CPUs (ranks beyond the slots run
# with --oversubscribe), whose times measure sharing, not scaling; mode is
# the mode the run used (run.json's distribute); run is the run's directory
# relative to OUTDIR: runs/RANKSxTHREADS-REPEAT, or runs/RANKSxTHREADS-MODE-REPEAT
# where SF_MODES named a mode (runs/ is SF_RUNS_DIR); load_average is the
# machine's 1-minute load average when the run started (other work there
# shows in it).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"
me="bench/scaling/measure.sh"
usage="usage: $me strong|weak [WORKFLOW] [OUTDIR] [shardflow run options...]"
study=${1:-}
case "$study" in
  strong|weak) shift ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
wf=${1:-$here/../speedup.yaml}
out=${2:-results/scaling}
shift $(( $# >= 2 ? 2 : $# ))
repeats=${SF_REPEATS:-3}
if [ "$study" = strong ]; then
  rows=${SF_ROWS:-10000000}
  configs=${SF_CONFIGS:-"1x1 1x2 2x1 4x1 8x1"}
  modes=${SF_MODES:-workflow}
else
  per_rank=${SF_ROWS_PER_RANK:-5000000}
  threads=${SF_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
  tasks=${SF_TASKS:-1 2 4 8}
  configs=
  for n in $tasks; do configs="$configs ${n}x$threads"; done
  modes=${SF_MODES:-parallel-read}
fi
fallback=${SF_MODE_FALLBACK:-dynamic}
runs=${SF_RUNS_DIR:-runs}

bin=$(sf_find_shardflow)
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "$me: no shardflow binary: set SHARDFLOW or put shardflow on PATH" >&2
  exit 2
fi
command -v python3 >/dev/null || { echo "$me: needs python3 to read run.json" >&2; exit 2; }
[ -f "$wf" ] || { echo "$me: no workflow $wf" >&2; exit 2; }
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
slots=$(sf_slots)
cpus=$(sf_cpus)

# Modes that this build does not implement yet are replaced by the fallback
# (the CSV's mode column says what ran); a mode listed twice runs once.
resolved=
for m in $modes; do
  if [ "$m" != workflow ] && ! sf_mode_available "$bin" "$wf" "$m"; then
    echo "$me: distribute.mode=$m is not accepted by this shardflow; using $fallback instead"
    m=$fallback
  fi
  case " $resolved " in *" $m "*) ;; *) resolved="$resolved $m" ;; esac
done

mkdir -p "$out/$runs"
csv=$out/$study.csv
echo "tasks,threads,rows,seconds,rows_per_second,wall_seconds,oversubscribed,mode,repeat,run,load_average" > "$csv"
if [ "$study" = strong ]; then what="$rows rows"; else what="$per_rank rows per rank"; fi
echo "$me $study: $wf, $what, configurations ${configs# }, modes${resolved}, $repeats repeat(s)," \
     "$cpus CPUs, $bin"
for rep in $(seq 1 "$repeats"); do
  for m in $resolved; do
    for cfg in $configs; do
      ranks=${cfg%x*}
      th=${cfg#*x}
      if [ "$study" = strong ]; then n=$rows; else n=$(( per_rank * ranks )); fi
      mpi=(-np "$ranks" --bind-to none -x OMP_NUM_THREADS)
      if [ "$ranks" -gt "$slots" ]; then mpi+=(--oversubscribe); fi
      sets=(--set "input.rows=$n")
      if [ "$m" = workflow ]; then name=${ranks}x${th}-$rep; else
        name=${ranks}x${th}-$m-$rep
        sets+=(--set "distribute.mode=$m")
      fi
      dir=$out/$runs/$name
      rm -rf "$dir"
      load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo nan)
      t0=$(date +%s.%N)
      OMP_NUM_THREADS=$th mpirun "${mpi[@]}" "$bin" run "$wf" --out "$dir" --threads "$th" "${sets[@]}" "$@" \
        > "$dir.log" 2>&1 ||
        { echo "$me: run $name failed:" >&2; cat "$dir.log" >&2; exit 1; }
      t1=$(date +%s.%N)
      python3 "$here/summarize.py" row "$dir/run.json" "$t0" "$t1" "$(( ranks * th > cpus ? 1 : 0 ))" \
        "$rep" "$runs/$name" "$load" >> "$csv"
      tail -n 1 "$csv"
    done
  done
done
echo "$me: results in $(cd "$out" && pwd)/$study.csv"
