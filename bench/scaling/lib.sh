# shellcheck shell=bash
# Sourced by the scaling and memory benchmarks: finding the binary, the CPUs
# that count as "not oversubscribed", and whether a distribution mode exists.

# The binary, as slurm/*.sbatch find it: $SHARDFLOW, else shardflow on PATH,
# else build/{release,ci,debug,asan}/bin/shardflow, else any build/*/bin, of
# the submission directory (or the current one), then of this repository.
sf_find_shardflow() {
  if [ -n "${SHARDFLOW:-}" ]; then echo "$SHARDFLOW"; return; fi
  if command -v shardflow >/dev/null 2>&1; then command -v shardflow; return; fi
  local here repo p
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  for repo in "${SLURM_SUBMIT_DIR:-$(pwd)}" "$here"; do
    for p in release ci debug asan; do
      if [ -x "$repo/build/$p/bin/shardflow" ]; then echo "$repo/build/$p/bin/shardflow"; return; fi
    done
    for p in "$repo"/build/*/bin/shardflow; do
      if [ -x "$p" ]; then echo "$p"; return; fi
    done
  done
}

# Ranks x threads beyond this many CPUs share cores (oversubscribed=1):
# $SF_CPUS, else the Slurm allocation (tasks x CPUs per task), else nproc.
sf_cpus() {
  if [ -n "${SF_CPUS:-}" ]; then echo "$SF_CPUS"
  elif [ -n "${SLURM_JOB_ID:-}" ]; then echo $(( ${SLURM_NTASKS:-1} * ${SLURM_CPUS_PER_TASK:-1} ))
  else nproc
  fi
}

# Ranks that mpirun places without --oversubscribe: the allocation's tasks
# under Slurm, else the cores.
sf_slots() {
  if [ -n "${SLURM_JOB_ID:-}" ]; then echo "${SLURM_NTASKS:-1}"; else nproc; fi
}

# Whether `shardflow validate` accepts WORKFLOW with distribute.mode=MODE
# (a mode that this build does not implement yet is rejected there).
sf_mode_available() { # BIN WORKFLOW MODE
  "$1" validate "$2" --set "distribute.mode=$3" >/dev/null 2>&1
}
