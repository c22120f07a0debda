"""The bench/peers analysis in Dask: a LocalCluster of 2 worker processes with
one thread each, reading the CSV once for all four results.

Per (service, region): count, mean, sample standard deviation (Dask's std,
ddof=1), the 0.5/0.95/0.99 quantiles and the number of distinct users; and the
10 client IPs with the most 4xx responses (ties by IP).

Dask 2022.12 has no grouped quantile and no grouped approximate distinct
count, so the quantiles come from a grouped apply of pandas' exact quantile
(interpolation 'lower', the same order statistic as shardflow's definition,
x_(floor(q(n-1)))) and the distinct counts from Dask's exact grouped nunique.
The top 10 is exact (value_counts).

usage: /usr/bin/python3 dask_query.py CSV OUT.json
Writes the normalised result (see check.py) with "query_seconds": the time
from building the graph to having every result, cluster start-up excluded
(the whole process is timed by run.sh).
"""
import json
import sys
import time

QS = [0.5, 0.95, 0.99]


QUANT_COLUMNS = ["service", "region"] + [f"q{q}" for q in QS]


def group_quantiles(frame):
    """One row: the group's keys and its exact quantiles (its own keys are
    carried in the row because Dask's grouped apply does not keep them)."""
    import pandas as pd
    values = frame.latency_ms.quantile(QS, interpolation="lower").to_numpy()
    row = [frame.service.iloc[0], frame.region.iloc[0]] + [float(v) for v in values]
    return pd.DataFrame([row], columns=QUANT_COLUMNS)


def main():
    if len(sys.argv) != 3:
        print("usage: dask_query.py CSV OUT.json", file=sys.stderr)
        return 2
    path, out = sys.argv[1], sys.argv[2]

    import dask
    import dask.dataframe as dd
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    client = Client(cluster)
    try:
        t0 = time.perf_counter()
        df = dd.read_csv(path, usecols=["service", "region", "user_id", "client_ip", "status", "latency_ms"],
                         dtype={"service": "object", "region": "object", "user_id": "int64",
                                "client_ip": "object", "status": "int64", "latency_ms": "float64"},
                         blocksize="64MB")
        keys = ["service", "region"]
        lat = df.groupby(keys).latency_ms.agg(["count", "mean", "std"])
        users = df.groupby(keys).user_id.nunique()
        meta = {"service": "object", "region": "object", **{c: "float64" for c in QUANT_COLUMNS[2:]}}
        quant = df[keys + ["latency_ms"]].groupby(keys).apply(group_quantiles, meta=meta)
        top = df[(df.status >= 400) & (df.status < 500)].client_ip.value_counts()
        lat, users, quant, top = dask.compute(lat, users, quant, top)
        t1 = time.perf_counter()
    finally:
        client.close()
        cluster.close()

    qmap = {(t[0], t[1]): t[2:] for t in quant[QUANT_COLUMNS].itertuples(index=False, name=None)}
    groups = {}
    for (service, region), row in lat.iterrows():
        key = f"{service}|{region}"
        groups[key] = {
            "count": int(row["count"]),
            "mean": float(row["mean"]),
            "stddev": float(row["std"]),
            "distinct": int(users[(service, region)]),
            "quantiles": {str(q): float(v) for q, v in zip(QS, qmap[(service, region)])},
        }
    items = sorted(((str(k), int(v)) for k, v in top.items()), key=lambda kv: (-kv[1], kv[0].encode()))
    result = {
        "system": "dask",
        "version": dask.__version__,
        "query_seconds": t1 - t0,
        "quantiles": "exact (pandas quantile, interpolation lower, in a grouped apply)",
        "quantile_rank": "lower",
        "distinct": "exact (grouped nunique)",
        "groups": groups,
        "top": [{"key": k, "count": c} for k, c in items[:10]],
    }
    with open(out, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
