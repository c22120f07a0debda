#!/usr/bin/env bash
# shardflow against DuckDB and Dask: the same analysis of the same CSV on the
# same 2 cores, every answer checked, wall times compared; then the HDF5
# variant's scan rate against a STREAM-style copy. See bench/peers/README.md.
#
# usage: bench/peers/run.sh [ROWS]            (default 20000000)
# environment:
#   SF_PEERS_RUNS=5           timed runs of each configuration (interleaved)
#   SF_PEERS_DASK_RUNS=RUNS   timed runs of Dask (it is slow)
#   SF_PEERS_DATA=build/peers-data   data files, the reference, the last run's outputs
#   SF_PEERS_MODE=parallel-read      shardflow's distribute.mode; when the default is
#                             not accepted by this shardflow, static is used (said so)
#   SF_PEERS_BUILD=DIR        build shardflow in DIR (default: the release preset)
#   SF_PEERS_DUCKDB_QUANTILE=approx|exact   DuckDB's approx_quantile or quantile_disc
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/env.sh
. scripts/env.sh

rows=${1:-20000000}
runs=${SF_PEERS_RUNS:-5}
dask_runs=${SF_PEERS_DASK_RUNS:-$runs}
data=${SF_PEERS_DATA:-build/peers-data}
build=${SF_PEERS_BUILD:-}
seed=42
alpha=0.01 # the quantiles agent's default accuracy, which peers.yaml uses
py=/usr/bin/python3
here=bench/peers

for v in "rows=$rows" "SF_PEERS_RUNS=$runs" "SF_PEERS_DASK_RUNS=$dask_runs"; do
  case ${v#*=} in
    '' | *[!0-9]*) echo "bench/peers: ${v%%=*} must be a whole number, not '${v#*=}'" >&2; exit 2 ;;
  esac
done
if [ "$rows" -lt 1 ] || [ "$runs" -lt 1 ]; then
  echo "bench/peers: ROWS and SF_PEERS_RUNS must be >= 1" >&2; exit 2
fi
[ "$dask_runs" -le "$runs" ] || dask_runs=$runs

say() { echo "bench/peers: $*" >&2; }

# --- tools: Debian packages when root, DuckDB from npm into this folder ---------
apt_install() { # packages...
  if [ "$(id -u)" -ne 0 ]; then
    say "missing: $* (install them with apt-get as root)"; exit 1
  fi
  say "installing $* with apt-get"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
[ -x "$py" ] || apt_install python3
"$py" -c 'import dask.dataframe, distributed, pandas' 2>/dev/null ||
  apt_install python3-dask python3-distributed python3-pandas
"$py" -c 'import h5py' 2>/dev/null || apt_install python3-h5py
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then apt_install nodejs npm; fi
command -v cc >/dev/null || apt_install gcc
duck_version=$(node -p 'require("./bench/peers/package.json").dependencies["@duckdb/node-api"]')
have=$(node -p 'try { require("./bench/peers/node_modules/@duckdb/node-api/package.json").version } catch (e) { "" }')
if [ "$have" != "$duck_version" ]; then
  say "installing @duckdb/node-api $duck_version into $here/node_modules"
  (cd "$here" && npm install --no-audit --no-fund --no-package-lock --loglevel=error >/dev/null)
fi

# --- shardflow and the copy loop --------------------------------------------------
if [ -z "$build" ]; then
  cmake --preset release >/dev/null
  cmake --build --preset release --target shardflow >/dev/null
  bin=build/release/bin
else
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j2 --target shardflow >/dev/null
  bin=$build/bin
fi
mkdir -p "$data"
out=$data/run
rm -rf "$out"
mkdir -p "$out"
cc -O2 -fopenmp "$here/stream.c" -o "$out/stream"

# --- data: regenerated only when missing or of another row count ----------------
csv=$data/requests.csv
h5=$data/requests.h5
generate() { # format file
  local stamp="rows=$rows seed=$seed generator=requests format=$1"
  if [ -f "$2" ] && [ "$(cat "$2.stamp" 2>/dev/null)" = "$stamp" ]; then return; fi
  say "generating $rows rows of the requests log as $1: $2"
  rm -f "$2" "$2.stamp"
  "$bin/shardflow" gen --generator requests --rows "$rows" --seed "$seed" --format "$1" -o "$2" >/dev/null
  echo "$stamp" > "$2.stamp"
}
generate csv "$csv"
generate hdf5 "$h5"
say "exact reference (pandas; not timed)"
"$py" "$here/check.py" reference "$csv" "$data/reference.json" >&2

# --- distribution mode ------------------------------------------------------------
mode=${SF_PEERS_MODE:-parallel-read}
mode_note=""
if ! "$bin/shardflow" validate "$here/peers.yaml" --set input.path="$csv" --set distribute.mode="$mode" >/dev/null 2>"$out/validate.err"; then
  if [ -n "${SF_PEERS_MODE:-}" ]; then
    say "shardflow does not accept distribute.mode=$mode:"; cat "$out/validate.err" >&2; exit 1
  fi
  mode_note="distribute.mode parallel-read is not available in this build: static used (rank 0 reads)"
  say "$mode_note"
  mode=static
fi

# --- timed runs -------------------------------------------------------------------
# Each configuration appends "wall own [pass read]" to $out/NAME.times: wall is
# the whole command (mpirun, node or python start-up included), own the
# system's own time (run.json total_seconds; DuckDB's and Dask's
# query_seconds); for shardflow also the pass and its reading time (rank 0's).
own_time() { # name -> own seconds of the last run
  case $1 in
    sf_* | h5_*) "$py" -c 'import json,sys; t=json.load(open(sys.argv[1]))["timings"]; p=t["passes"][0]; print(t["total_seconds"], p["seconds"], p["read_seconds"])' "$out/$1/run.json" ;;
    *) "$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["query_seconds"])' "$out/$1.json" ;;
  esac
}
timed() { # name command...
  local name=$1 t0 t1
  shift
  t0=$(date +%s.%N)
  if ! "$@" >"$out/$name.log" 2>&1; then
    say "$name failed: $*"; tail -n 30 "$out/$name.log" >&2; exit 1
  fi
  t1=$(date +%s.%N)
  echo "$("$py" -c 'import sys; print(float(sys.argv[2]) - float(sys.argv[1]))' "$t0" "$t1") $(own_time "$name")" >> "$out/$name.times"
}
sf() { # name np threads workflow input -> one shardflow run
  local binding=()
  [ "$2" -eq 1 ] && binding=(--bind-to none)
  timed "$1" mpirun -np "$2" "${binding[@]}" "$bin/shardflow" run "$here/$4" --out "$out/$1" \
    --threads "$3" --set input.path="$5" --set distribute.mode="$mode"
}

uptime_start=$(cut -d' ' -f1-3 /proc/loadavg)
# Every system reads the files from the page cache.
cat "$csv" > /dev/null
say "timing: $runs runs each (Dask $dask_runs), configurations interleaved"
for r in $(seq "$runs"); do
  say "round $r"
  sf sf_np2 2 1 peers.yaml "$csv"
  sf sf_1x2 1 2 peers.yaml "$csv"
  timed duckdb node "$here/duckdb_query.mjs" "$csv" "$out/duckdb.json"
  [ "$r" -le "$dask_runs" ] && timed dask "$py" "$here/dask_query.py" "$csv" "$out/dask.json"
done

say "HDF5 variant: $runs runs each"
"$py" - "$h5" > "$out/h5_bytes" <<'EOF'
import sys, h5py
# Bytes the stats pass reads: the three numeric columns and their null masks.
with h5py.File(sys.argv[1], "r") as f:
    t = f["table"]
    total = 0
    for c in ("latency_ms", "bytes", "status"):
        total += t[c].size * t[c].dtype.itemsize
        if "_valid" in t and c in t["_valid"]:
            total += t["_valid"][c].size * t["_valid"][c].dtype.itemsize
print(total)
EOF
# The table as a file read from disk is cached: its pages dropped, then read
# back once in order (cat), so that the page cache holds it in large folios
# (up to 2 MiB, mapped whole by a fault). A file just written (the generator)
# or read in by the readers' own WILLNEED hints sits in small folios, and its
# mapped scan is slower (README, HDF5 variant); dropping and re-reading first
# keeps the state the same from run to run of this script.
"$py" -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
os.close(fd)' "$h5"
cat "$h5" > /dev/null
# One untimed run (mpirun and the file's metadata).
sf h5_warmup 1 2 peers_hdf5.yaml "$h5"
for r in $(seq "$runs"); do
  sf h5_np2 2 1 peers_hdf5.yaml "$h5"
  sf h5_1x2 1 2 peers_hdf5.yaml "$h5"
done
say "STREAM-style copy"
"$out/stream" > "$out/stream.txt"
uptime_end=$(cut -d' ' -f1-3 /proc/loadavg)

# --- checks and the table ---------------------------------------------------------
rc=0
"$py" "$here/check.py" check "$data/reference.json" --alpha "$alpha" \
  --shardflow "sf_np2=$out/sf_np2/result.json" --shardflow "sf_1x2=$out/sf_1x2/result.json" \
  --peer "duckdb=$out/duckdb.json" --peer "dask=$out/dask.json" \
  --hdf5 "h5_np2=$out/h5_np2/result.json" --hdf5 "h5_1x2=$out/h5_1x2/result.json" \
  --verdicts "$out/verdicts.json" || rc=1
echo
"$py" "$here/report.py" "$out" --rows "$rows" --csv "$csv" --mode "$mode" --mode-note "$mode_note" \
  --load "$uptime_start" "$uptime_end" || rc=1
exit $rc
