#!/usr/bin/env bash
# Every optimization's time with and without it, measured in the same run:
# each switch's variants run interleaved (on, off, on, off, ...), medians of
# run.json's own time, result.json checked byte-identical between them.
# Prints a Markdown table and writes it, with every run, to OUTDIR. See
# bench/optimize/README.md.
#
# usage: bench/optimize/run.sh [ROWS] [REPEATS] [OUTDIR]
#        (defaults: 10000000, 5, results/optimize)
# environment:
#   SF_OPT_BUILD=DIR     build shardflow in DIR (Release); default: the release preset
#   SF_OPT_DATA=DIR      where the generated CSV is kept [build/optimize-data]
#   SF_OPT_COLD=file|drop|warm   how input.fadvise gets a cold page cache: drop only
#                        the CSV's pages (file, the default), drop the whole page
#                        cache (drop: root, disturbs everyone else), or not at all
#   SF_OPT_ONLY=REGEX    run only the rows whose group id matches (e.g. 'pools|batch')
#   SF_OPT_KEEP=1        keep the scratch folder of the runs
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/env.sh

rows=${1:-10000000}
reps=${2:-5}
outdir=${3:-results/optimize}
build=${SF_OPT_BUILD:-}
data=${SF_OPT_DATA:-build/optimize-data}
cold=${SF_OPT_COLD:-file}
py=/usr/bin/python3
[ -x "$py" ] || py=python3

for v in "ROWS=$rows" "REPEATS=$reps"; do
  case ${v#*=} in
    '' | *[!0-9]*) echo "bench/optimize: ${v%%=*} must be a whole number, not '${v#*=}'" >&2; exit 2 ;;
  esac
done
[ "$rows" -ge 1 ] && [ "$reps" -ge 1 ] || { echo "bench/optimize: ROWS and REPEATS must be >= 1" >&2; exit 2; }
case $cold in file | drop | warm) ;; *) echo "bench/optimize: SF_OPT_COLD must be file, drop or warm" >&2; exit 2 ;; esac

# --- shardflow, built as a user builds it -------------------------------------------
if [ -z "$build" ]; then
  cmake --preset release >/dev/null
  cmake --build --preset release --target shardflow >/dev/null
  bin=build/release/bin
else
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j2 --target shardflow >/dev/null
  bin=$build/bin
fi

# --- the inputs: regenerated only when missing or of another row count -----------
mkdir -p "$data"
generate() { # FORMAT FILE
  local stamp="rows=$rows seed=42 generator=requests format=$1"
  if [ ! -f "$2" ] || [ "$(cat "$2.stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "bench/optimize: generating $rows rows of the requests log as $1: $2" >&2
    rm -f "$2" "$2.stamp"
    "$bin/shardflow" gen --generator requests --rows "$rows" --seed 42 --format "$1" -o "$2" >/dev/null
    echo "$stamp" > "$2.stamp"
  fi
}
csv=$data/requests.csv
generate csv "$csv"
# The same rows as HDF5 columns, for the in-place and vector kernel rows.
h5=$data/requests.h5
generate hdf5 "$h5"

work=$(mktemp -d "${TMPDIR:-/tmp}/shardflow-optimize.XXXXXX")
if [ "${SF_OPT_KEEP:-0}" = 1 ]; then
  echo "bench/optimize: scratch folder kept: $work" >&2
else
  trap 'rm -rf "$work"' EXIT
fi
"$py" bench/optimize/optimize.py --bin "$bin" --csv "$csv" --h5 "$h5" --rows "$rows" --repeats "$reps" \
  --out "$outdir" --work "$work" --cold "$cold" --only "${SF_OPT_ONLY:-}"
