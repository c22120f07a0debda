#!/usr/bin/env python3
"""Agent plugins as a user loads them: `shardflow run WORKFLOW --plugin PATH`
and the workflow key `plugins: [PATH]` run the example `range_count` agent,
whose counts must equal counts computed here from the CSV (and be identical
at 1 and 2 ranks); a missing plugin file, a shared object without
sf_plugin_init, an agent used without its plugin and a bad agent option
fail with exit code 3 and one message naming the culprit.

usage: plugin.py MPIEXEC SHARDFLOW SOURCE_DIR EXAMPLE_PLUGIN NO_INIT_PLUGIN
"""
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

MPIEXEC, BINARY, SRC, PLUGIN, NO_INIT = sys.argv[1:6]
# Every error case below ends with ranks that exit non-zero on their own,
# after agreeing on the error; mpirun then spends odls_base_sigkill_timeout
# (1 s, more than once) before it returns. 0 skips that wait; what mpirun
# kills is the same.
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_odls_base_sigkill_timeout="0")
failures = []


def expect(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def said(p):
    """The shardflow lines of a run's stderr (mpirun adds its own), for messages."""
    return " / ".join(l for l in p.stderr.splitlines() if l.startswith("shardflow")) or p.stderr.strip()[-300:]


def run(args, np_="2"):
    return subprocess.run([MPIEXEC, "-np", np_, "--oversubscribe", BINARY] + args, env=env,
                          capture_output=True, text=True, timeout=300)


tmp = tempfile.mkdtemp(prefix="sf-plugin-")
rng = random.Random(5)
services = ["api", "auth", "db", "a|b", "search"]
rows = []
csv_path = os.path.join(tmp, "data.csv")
with open(csv_path, "w") as f:
    f.write("id,service,latency,n\n")
    for i in range(4000):
        # Skewed: most rows are "api". Latencies on a 0.25 grid so that the
        # bounds themselves occur; some latencies empty (null).
        s = "api" if rng.random() < 0.6 else rng.choice(services)
        lat = None if rng.random() < 0.05 else rng.randrange(0, 160) / 4
        n = rng.randrange(0, 30)
        rows.append((s, lat, n))
        f.write(f"{i},{s},{'' if lat is None else repr(lat)},{n}\n")


def counts(values, lo, hi):
    c = {"in_range": 0, "below": 0, "above": 0, "missing": 0}
    for v in values:
        if v is None:
            c["missing"] += 1
        elif v < lo:
            c["below"] += 1
        elif v >= hi:
            c["above"] += 1
        else:
            c["in_range"] += 1
    return c


def printed(key):
    # Group keys print with '|' and '\' escaped by '\'.
    return key.replace("\\", "\\\\").replace("|", "\\|")


want_fast = {printed(s): counts([r[1] for r in rows if r[0] == s], 10, 20)
             for s in sorted(set(r[0] for r in rows), key=printed)}
want_fast = dict(sorted(want_fast.items(), key=lambda kv: kv[0].encode()))
want_n = counts([r[2] for r in rows], 5, 15)
AGENTS = ("    agents:\n"
          "      - {agent: range_count, id: fast, column: latency, lo: 10, hi: 20, by: [service]}\n"
          "      - {agent: range_count, id: small_n, column: n, lo: 5, hi: 15}\n"
          "      - {agent: stats, id: lat, column: latency}\n")


def workflow(name, plugins=None, agents=AGENTS):
    path = os.path.join(tmp, name + ".yaml")
    with open(path, "w") as f:
        f.write(f"name: {name}\n")
        if plugins is not None:
            f.write("plugins: [" + ", ".join(plugins) + "]\n")
        f.write(f"input: {{format: csv, path: {csv_path}}}\n"
                "shard: {strategy: hash, key: service, shards: 6}\n"
                "stages:\n  - name: s\n" + agents)
    return path


def check_result(out, what):
    try:
        with open(os.path.join(out, "result.json")) as f:
            text = f.read()
        res = json.loads(text)["results"]["s"]
    except (OSError, ValueError, KeyError) as e:
        expect(False, f"{what}: result.json readable ({e})")
        return None
    fast = res.get("fast", {}).get("groups")
    expect(fast == want_fast, f"{what}: range_count by service equals the counts from the CSV")
    expect(fast is not None and list(fast) == list(want_fast), f"{what}: groups in printed-key order")
    expect(res.get("small_n") == want_n, f"{what}: ungrouped range_count on an integer column")
    expect(res.get("lat", {}).get("count") == sum(r[1] is not None for r in rows),
           f"{what}: a built-in agent alongside the plugin's")
    return text


# --plugin on the command line, at 2 ranks and at 1.
wf = workflow("cli")
texts = []
for np_ in ("2", "1"):
    out = os.path.join(tmp, "out-cli-" + np_)
    p = run(["run", wf, "--plugin", PLUGIN, "--out", out], np_)
    expect(p.returncode == 0, f"run --plugin at -np {np_} (exit {p.returncode}: {said(p)})")
    if p.returncode == 0:
        texts.append(check_result(out, f"--plugin, -np {np_}"))
expect(len(texts) == 2 and texts[0] == texts[1], "result.json identical at 1 and 2 ranks")

# The workflow key, with a path relative to the workflow file; then both
# ways at once (the same file loaded twice is loaded once).
rel = os.path.relpath(PLUGIN, tmp)
wf_key = workflow("key", plugins=[rel])
out = os.path.join(tmp, "out-key")
p = run(["run", wf_key, "--out", out])
expect(p.returncode == 0, f"run with plugins: [{rel}] (exit {p.returncode}: {said(p)})")
if p.returncode == 0:
    text = check_result(out, "plugins: key")
    expect(text is not None and texts and json.loads(text)["results"] == json.loads(texts[0])["results"],
           "plugins: key gives the same results as --plugin")
p = run(["run", wf_key, "--plugin", PLUGIN, "--out", os.path.join(tmp, "out-both")])
expect(p.returncode == 0, f"the same plugin by --plugin and plugins: (exit {p.returncode}: {said(p)})")

# Errors: one message, exit 3, naming what went wrong.
missing = os.path.join(tmp, "no_such_plugin.so")
p = run(["run", wf, "--plugin", missing])
expect(p.returncode == 3 and p.stderr.count("shardflow: error:") == 1 and missing in p.stderr
       and "cannot load" in p.stderr and "No such file" in p.stderr,
       f"--plugin of a missing file: exit 3, one message with the path and dlerror ({p.returncode}: {said(p)})")
wf_missing = workflow("missing", plugins=["no_such_plugin.so"])
p = run(["run", wf_missing])
expect(p.returncode == 3 and p.stderr.count("shardflow: error:") == 1 and "missing.yaml" in p.stderr
       and "no_such_plugin.so" in p.stderr and "cannot load" in p.stderr,
       f"plugins: key with a missing file: exit 3 naming the workflow and the plugin ({p.returncode}: {said(p)})")
p = run(["run", wf, "--plugin", NO_INIT])
expect(p.returncode == 3 and p.stderr.count("shardflow: error:") == 1 and NO_INIT in p.stderr
       and "sf_plugin_init" in p.stderr,
       f"--plugin without sf_plugin_init: exit 3 saying so ({p.returncode}: {said(p)})")
p = run(["run", wf])
expect(p.returncode == 3 and p.stderr.count("shardflow: error:") == 1 and "range_count" in p.stderr,
       f"range_count without its plugin: exit 3 naming the agent ({p.returncode}: {said(p)})")
wf_bad = workflow("badopt", agents="    agents:\n"
                  "      - agent: range_count\n        id: fast\n        column: latency\n"
                  "        lo: 20\n        hi: 10\n")
p = run(["validate", wf_bad, "--plugin", PLUGIN])
expect(p.returncode == 3 and p.stderr.count("shardflow: error:") == 1 and "badopt.yaml:11" in p.stderr
       and "'hi'" in p.stderr and "'fast'" in p.stderr,
       f"a bad plugin agent option: exit 3 naming file:line, agent and option ({p.returncode}: {said(p)})")

print(f"{len(failures)} failures")
if not failures:
    shutil.rmtree(tmp, ignore_errors=True)  # kept for a look when something failed
sys.exit(1 if failures else 0)
