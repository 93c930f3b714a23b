"""Loop overhead: daskhpo against a bare Dask ``as_completed`` loop, in one run.

Both loops run the same trivial objective on the same 2-worker LocalCluster with the same
number of tasks in flight; each prints one JSON line, and a summary line gives the ratio
of throughputs and the flatness of daskhpo's per-trial cost (trials/s over the last 1,000
trials divided by trials/s over the first 1,000).  The ``fsync=True`` journal mode (each
event forced to the disk) runs too; its cost per trial is the difference of mean seconds
per trial against the storage mode without fsync (``fsync_ms_per_trial``).

    python benchmarks/overhead.py [--trials 3000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from distributed import Client, LocalCluster, as_completed

import daskhpo


def noop(x: float) -> float:
    return x


def bare_dask(client: Client, n_trials: int, in_flight: int) -> dict:
    """The baseline: submit, react to each completion, submit the next."""
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    stamps = []
    queue = as_completed(loop=client.loop, with_results=True)
    submitted = 0
    for _ in range(in_flight):
        queue.add(client.submit(noop, x=float(rng.uniform(-5, 5)), pure=False))
        submitted += 1
    results = []
    for _, result in queue:
        results.append(result)
        stamps.append(time.perf_counter())
        if submitted < n_trials:
            queue.add(client.submit(noop, x=float(rng.uniform(-5, 5)), pure=False))
            submitted += 1
    return {"seconds": time.perf_counter() - start, "stamps": stamps}


def with_daskhpo(client: Client, n_trials: int, in_flight: int, storage: Path | None, fsync: bool = False) -> dict:
    exp = daskhpo.build_experiment("overhead", {"x": "uniform(-5, 5)"}, storage=storage, seed=0, fsync=fsync)
    stamps = []
    exp.subscribe(lambda record: stamps.append(time.perf_counter()))
    start = time.perf_counter()
    exp.workon(noop, max_trials=n_trials, client=client, n_workers=in_flight)
    seconds = time.perf_counter() - start
    assert exp.history.sizes["trial"] == n_trials
    exp.close()
    return {"seconds": seconds, "stamps": stamps}


def rate(stamps: list[float]) -> float:
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    logging.getLogger("distributed").setLevel(logging.ERROR)
    window = min(1000, args.trials // 3)

    runs: dict[str, list[dict]] = {"bare_dask": [], "daskhpo_memory": [], "daskhpo_storage": [],
                                   "daskhpo_storage_fsync": []}
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=":0") as cluster, Client(
        cluster
    ) as client, tempfile.TemporaryDirectory() as tmp:
        bare_dask(client, 200, args.workers)  # warm up both sides once
        with_daskhpo(client, 200, args.workers, None)
        for repeat in range(args.repeats):  # interleaved, so drifts hit every loop alike
            runs["bare_dask"].append(bare_dask(client, args.trials, args.workers))
            runs["daskhpo_memory"].append(with_daskhpo(client, args.trials, args.workers, None))
            runs["daskhpo_storage"].append(
                with_daskhpo(client, args.trials, args.workers, Path(tmp) / f"r{repeat}.nc")
            )
            runs["daskhpo_storage_fsync"].append(
                with_daskhpo(client, args.trials, args.workers, Path(tmp) / f"f{repeat}.nc", fsync=True)
            )

    summary = {}
    for name, results in runs.items():
        throughput = statistics.median(args.trials / r["seconds"] for r in results)
        flat = statistics.median(rate(r["stamps"][-window:]) / rate(r["stamps"][:window]) for r in results)
        summary[name] = {"trials_per_s": throughput, "last_over_first": flat}
        print(json.dumps({"loop": name, "trials": args.trials, "repeats": args.repeats,
                          "trials_per_s": round(throughput, 1), "last_over_first": round(flat, 3)}))
    base = summary["bare_dask"]["trials_per_s"]
    result = {
        "benchmark": "overhead",
        "workers": args.workers,
        "ratio_memory": round(summary["daskhpo_memory"]["trials_per_s"] / base, 3),
        "ratio_storage": round(summary["daskhpo_storage"]["trials_per_s"] / base, 3),
        "flatness_storage": round(summary["daskhpo_storage"]["last_over_first"], 3),
        "ratio_storage_fsync": round(summary["daskhpo_storage_fsync"]["trials_per_s"] / base, 3),
        "fsync_ms_per_trial": round(1000 * (1 / summary["daskhpo_storage_fsync"]["trials_per_s"]
                                            - 1 / summary["daskhpo_storage"]["trials_per_s"]), 3),
        "goal": "ratio >= 0.8, flatness >= 0.9",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
