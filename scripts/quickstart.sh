#!/usr/bin/env bash
# Installs the dependencies, builds shardflow (release) and runs the default
# workflow inputs/demo.yaml on 2 ranks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
. scripts/env.sh
cmake --preset release >/dev/null
cmake --build --preset release
np=${SF_NP:-2}
mpirun -np "$np" --oversubscribe build/release/bin/shardflow run inputs/demo.yaml --out results/demo
echo "quickstart: result: $(pwd)/results/demo/result.json"
echo "quickstart: run details: $(pwd)/results/demo/run.json"
