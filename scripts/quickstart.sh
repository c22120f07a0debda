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
# The findings, one line each, and what the generator injected.
python3 - results/demo <<'PY'
import json, sys
d = sys.argv[1]
r = json.load(open(d + "/result.json"))
print("quickstart: %d findings:" % len(r.get("findings", [])))
for f in r.get("findings", []):
    w = f.get("window") or {}
    print("  %-16s %-30s %-28s %s .. %s" % (f["aspect"], f["rule"], f["key"], w.get("start", "-"), w.get("end", "-")))
try:
    t = json.load(open(d + "/truth.json"))
    print("quickstart: injected:")
    for i in t["incidents"]:
        print("  %-16s %-30s %-28s %s .. %s" % (i["aspect"], i["kind"], json.dumps(i["keys"]), i["start"], i["end"]))
except FileNotFoundError:
    pass
PY
echo "quickstart: result: $(pwd)/results/demo/result.json"
echo "quickstart: run details: $(pwd)/results/demo/run.json"
