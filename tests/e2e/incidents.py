#!/usr/bin/env python3
"""Acceptance of the aspect analysis on injected incidents.

Runs the default workflow (inputs/demo.yaml: the requests generator with its
five injected incidents, five aspects, the detector ensemble) on the default
seed and on five other seeds, and checks against the generator's ground truth
(truth.json beside result.json):
  - every injected incident is reported by the aspect whose specialty it is,
    with its key and its time window (within one bucket at each end);
  - no finding of any aspect names something that was not injected: every
    finding matches an injected incident of its own aspect, or one whose
    known side effect its aspect sees (SIDE_EFFECTS);
  - the default ensemble's F1 on the per-record truth is at least the best
    single detector's;
  - every cross-aspect incident of synthesis.incidents joins findings of at
    least two aspects and is an injected incident (subject and window), and
    the default seed's run has at least one.

usage: incidents.py MPIEXEC SHARDFLOW SOURCE_DIR
Environment: SF_INCIDENT_SEEDS (comma-separated, default 42,1,2,3,4,5),
SF_INCIDENT_NP (ranks, default 2).
"""
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile

MPIEXEC, BINARY, SRC = sys.argv[1], sys.argv[2], sys.argv[3]
SEEDS = [int(s) for s in os.environ.get("SF_INCIDENT_SEEDS", "42,1,2,3,4,5").split(",")]
NP = os.environ.get("SF_INCIDENT_NP", "2")
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
failures = []
# What an incident also shows to aspects other than its own: the
# abandonment incident moves slow users into one region (performance sees
# the region's latency), the checkout failure is a burst of 500s (technical),
# a latency regression slows pages (user experience: abandoned sessions).
SIDE_EFFECTS = {"slow_abandonment": {"performance"}, "checkout_failure": {"technical"},
                "latency_regression": {"user_experience"}}
BUCKET = 60.0  # the workflow's bucket width, seconds: the tolerance on window ends


def expect(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def ts(s):
    return datetime.datetime.fromisoformat(s).replace(tzinfo=datetime.timezone.utc).timestamp()


def subject_matches(finding, incident):
    """Every key column that both name has the incident's value; at least one is shared."""
    parts = finding.get("key_parts") or {}
    shared = 0
    for col, want in incident["keys"].items():
        if col not in parts:
            continue
        shared += 1
        values = want if isinstance(want, list) else [want]
        if parts[col] not in values:
            return False
    return shared > 0


def window_overlaps(finding, incident, slack=BUCKET):
    w = finding.get("window")
    if w is None:
        return True
    return ts(w["start"]) < ts(incident["end"]) + slack and ts(w["end"]) > ts(incident["start"]) - slack


def window_accurate(finding, incident):
    w = finding.get("window")
    if w is None:
        return False
    return (abs(ts(w["start"]) - ts(incident["start"])) <= BUCKET and
            abs(ts(w["end"]) - ts(incident["end"])) <= BUCKET)


tmp = tempfile.mkdtemp(prefix="sf-incidents-")
for seed in SEEDS:
    out = os.path.join(tmp, "seed%d" % seed)
    cmd = [MPIEXEC, "-np", NP, BINARY, "run", os.path.join(SRC, "inputs", "demo.yaml"), "--out", out,
           "--set", "input.seed=%d" % seed]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    expect(p.returncode == 0, "seed %d: run exits 0 (%s)" % (seed, p.stderr.strip()[-300:]))
    if p.returncode != 0:
        continue
    result = json.load(open(os.path.join(out, "result.json")))
    truth = json.load(open(os.path.join(out, "truth.json")))
    incidents = truth["incidents"]
    findings = result.get("findings", [])
    expect(len(incidents) == 5, "seed %d: five incidents injected" % seed)
    for inc in incidents:
        own = [f for f in findings if f["aspect"] == inc["aspect"] and subject_matches(f, inc)
               and window_overlaps(f, inc)]
        expect(len(own) > 0, "seed %d: %s (%s, %s) reported by %s" % (
            seed, inc["kind"], json.dumps(inc["keys"]), inc["start"], inc["aspect"]))
        if inc["kind"] == "credential_stuffing":
            ips = set(inc["keys"]["client_ip"])
            named = {f["key_parts"].get("client_ip") for f in own}
            expect(ips <= named, "seed %d: every attacking address named (%s)" % (seed, sorted(ips - named)))
        expect(any(window_accurate(f, inc) for f in own),
               "seed %d: %s window within one bucket (%s)" % (
                   seed, inc["kind"], [(f.get("window") or {}).get("start") for f in own][:3]))
    for f in findings:
        matched = [i["kind"] for i in incidents if subject_matches(f, i) and window_overlaps(f, i)
                   and (f["aspect"] == i["aspect"] or f["aspect"] in SIDE_EFFECTS.get(i["kind"], ()))]
        expect(len(matched) > 0, "seed %d: finding %s/%s %s %s is an injected incident (its aspect's or a side effect)" % (
            seed, f["aspect"], f["rule"], f.get("key"), (f.get("window") or {}).get("start")))
    joined = result["synthesis"]["incidents"]
    for j in joined:
        expect(len(set(j["aspects"])) >= 2 and len(j["findings"]) >= 2,
               "seed %d: incident %d joins findings of several aspects (%s)" % (seed, j["incident"], j["aspects"]))
        members = [findings[i] for i in j["findings"]]
        expect(len({f["aspect"] for f in members}) == len(j["aspects"]),
               "seed %d: incident %d lists the aspects of its findings" % (seed, j["incident"]))
        probe = {"key_parts": {k: v for k, v in j["subject"].items() if not isinstance(v, list)},
                 "window": j["window"]}
        for k, v in j["subject"].items():
            if isinstance(v, list):
                probe["key_parts"].setdefault(k, None)
        matched = [i["kind"] for i in incidents
                   if window_overlaps(probe, i) and all(
                       (v is None or k not in i["keys"] or
                        v in (i["keys"][k] if isinstance(i["keys"][k], list) else [i["keys"][k]]))
                       for k, v in probe["key_parts"].items())
                   and any(k in i["keys"] for k in j["subject"])]
        expect(len(matched) > 0, "seed %d: incident %d (%s) is an injected incident" % (seed, j["incident"], j["title"]))
        print("seed %d: incident %s" % (seed, j["title"]))
    if seed == 42:
        expect(len(joined) >= 1, "seed 42: at least one incident joins findings of several aspects")
    vote = result["results"]["detect"]["latency_anomalies"]
    best = max(d["f1"] for d in vote["detectors"].values())
    ens = vote["ensemble"]["f1"]
    print("seed %d: F1 ensemble %.4f, detectors %s" % (
        seed, ens, ", ".join("%s %.4f" % (k, d["f1"]) for k, d in sorted(vote["detectors"].items()))))
    expect(ens >= best, "seed %d: ensemble F1 %.4f >= best single detector %.4f" % (seed, ens, best))

if failures:
    print("%d failure(s); outputs kept in %s" % (len(failures), tmp))
    sys.exit(1)
shutil.rmtree(tmp)
print("all incident checks passed")
