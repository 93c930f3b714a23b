"""What the implicit cluster's threads cost against worker processes.

``workon`` without a client starts an in-process ``LocalCluster`` (threads; see
``daskhpo.experiment.implicit_client``) so that scripts run without a main guard.  This
measures, on the same machine and in one run, the same search on:

- ``threads``: the implicit cluster (``workon`` given no client), as a user gets it;
- ``processes``: ``LocalCluster(n_workers, threads_per_worker=1)`` (worker processes),
  started under this script's main guard.

for two objectives of about the same single-core duration: ``python`` (a pure-Python loop,
which holds the GIL) and ``numpy`` (a large sort, which releases it).  Each result is one JSON
line: seconds to start the cluster, seconds for the trials, and trials/s; the summary line
gives the ratio of trials/s (threads / processes) per objective.

    python benchmarks/implicit_cluster.py [--trials 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

import daskhpo


def python_loop(x: float, n: int = 6_000_000) -> float:
    """About 0.25 s of pure Python on one core: it holds the GIL throughout."""
    total = 0
    for i in range(n):
        total += i % 7
    return (x - 1) ** 2 + total * 0.0


def numpy_sort(x: float, n: int = 4_000_000) -> float:
    """About as long, in numpy's sort, which releases the GIL."""
    data = np.random.default_rng(int(abs(x) * 1e6)).random(n)
    for _ in range(2):
        data = np.sort(data)[::-1].copy()
    return (x - 1) ** 2 + float(data[0]) * 0.0


OBJECTIVES = {"python": python_loop, "numpy": numpy_sort}


def single_core_seconds(fn) -> float:
    start = time.perf_counter()
    fn(0.5)
    return time.perf_counter() - start


def search(fn, trials: int, client=None) -> float:
    exp = daskhpo.build_experiment("implicit-cluster", {"x": "uniform(-5, 5)"}, seed=0)
    start = time.perf_counter()
    exp.workon(fn, max_trials=trials, client=client, progress=False)
    return time.perf_counter() - start


def run_threads(fn, trials: int) -> dict:
    from daskhpo.experiment import implicit_client

    start = time.perf_counter()
    with implicit_client() as client:
        started = time.perf_counter() - start
        workers = len(client.scheduler_info()["workers"])
        seconds = search(fn, trials, client)
    # the end-to-end path of a user: workon alone, starting and closing the implicit cluster
    return {"startup_s": started, "trials_s": seconds, "workers": workers}


def run_processes(fn, trials: int, n_workers: int) -> dict:
    from distributed import Client, LocalCluster

    start = time.perf_counter()
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        started = time.perf_counter() - start
        seconds = search(fn, trials, client)
    return {"startup_s": started, "trials_s": seconds, "workers": n_workers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from distributed.deploy.utils import nprocesses_nthreads

    n_workers, _ = nprocesses_nthreads()
    summary: dict[str, dict[str, float]] = {}
    for name, fn in OBJECTIVES.items():
        one = statistics.median(single_core_seconds(fn) for _ in range(3))
        rates: dict[str, list[float]] = {"threads": [], "processes": []}
        for repeat in range(args.repeats):
            for mode in ("threads", "processes"):
                result = run_threads(fn, args.trials) if mode == "threads" else run_processes(fn, args.trials, n_workers)
                result.update(objective=name, mode=mode, repeat=repeat, trials=args.trials, single_core_s=one,
                              trials_per_s=args.trials / result["trials_s"])
                rates[mode].append(result["trials_per_s"])
                print(json.dumps(result), flush=True)
        summary[name] = {mode: statistics.median(values) for mode, values in rates.items()}
        summary[name]["threads_over_processes"] = summary[name]["threads"] / summary[name]["processes"]
    print(json.dumps({"summary": summary}), flush=True)


if __name__ == "__main__":  # worker processes of the "processes" mode re-import this script
    main()
