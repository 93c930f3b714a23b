"""Nested parallelism: each trial cross-validates an SVC with joblib's Dask backend.

The objective of the Orion talk: an SVC on scikit-learn's diabetes data, its ``C`` and
``gamma`` searched on a log scale.  The diabetes target is a number (disease progression
one year after baseline), so for a classifier it is binarised at its median: "will this
patient progress more than the typical patient?".  That keeps the talk's SVC and gives two
balanced classes, so accuracy is a fair score.

Inside the objective, ``cross_validate`` runs under ``joblib.parallel_backend("dask")``:
its folds become Dask tasks on the *same* cluster that runs the trials, while the trial
waits for them.  This cannot deadlock even when every worker thread holds a trial, because
joblib's Dask backend *secedes* the waiting trial from its worker's thread pool (and
rejoins afterwards), so the folds find free threads.  What you must and must not do is in
the README, section "On a Slurm cluster".

Run it::

    python examples/sklearn_svc_joblib.py                      # LocalCluster, 2 workers x 1 thread
    python examples/sklearn_svc_joblib.py --slurm --jobs 8     # Slurm jobs, adaptive 0..8
"""

from __future__ import annotations

import argparse
import logging
import sys

import joblib
import numpy as np
from distributed import Client, LocalCluster
from sklearn.datasets import load_diabetes
from sklearn.model_selection import cross_validate
from sklearn.svm import SVC

import daskhpo

SPACE = {"C": "loguniform(1e-2, 1e3)", "gamma": "loguniform(1e-4, 1e1)"}


def load_data() -> tuple[np.ndarray, np.ndarray]:
    """Diabetes features, and whether progression is above the median (0/1)."""
    X, y = load_diabetes(return_X_y=True)
    return X, (y > np.median(y)).astype(int)


def svc_objective(C: float, gamma: float, n_splits: int = 5) -> dict:
    """1 - mean cross-validated accuracy of ``SVC(C, gamma)``; the folds run as Dask tasks."""
    X, y = load_data()
    # Inside a Dask task the backend finds the worker's client by itself (get_client()).
    with joblib.parallel_backend("dask"):
        scores = cross_validate(SVC(C=C, gamma=gamma), X, y, cv=n_splits)
    return {
        "objective": 1.0 - float(scores["test_score"].mean()),
        "fit_time": float(scores["fit_time"].mean()),
    }


def run(client: Client, trials: int, n_workers: int, storage: str | None = None, seed: int = 0) -> daskhpo.Experiment:
    """Search ``C`` and ``gamma`` with ``n_workers`` trials in flight on ``client``'s cluster."""
    experiment = daskhpo.build_experiment("svc-diabetes", SPACE, algorithm="random", storage=storage, seed=seed)
    return experiment.workon(svc_objective, max_trials=trials, client=client, n_workers=n_workers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--in-flight", type=int, default=2, help="trials in flight (n_workers)")
    parser.add_argument("--storage", default=None, help="where to keep the history (.nc)")
    parser.add_argument("--slurm", action="store_true", help="run on Slurm jobs instead of a LocalCluster")
    parser.add_argument("--jobs", type=int, default=2, help="Slurm: at most this many jobs (adaptive from 0)")
    parser.add_argument("--cores", type=int, default=1, help="Slurm: cores (= worker threads) per job")
    parser.add_argument("--memory", default="1GB", help="Slurm: memory per job")
    parser.add_argument("--walltime", default="00:30:00", help="Slurm: walltime per job")
    parser.add_argument("--interface", default=None, help="Slurm: network interface, e.g. ib0 (lo on one machine)")
    parser.add_argument("--log-directory", default=None, help="Slurm: where the jobs' logs go")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("distributed", "bokeh", "tornado"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    if args.slurm:
        cluster = daskhpo.SlurmGPUCluster(
            gpus_per_job=0, cores=args.cores, processes=1, memory=args.memory, walltime=args.walltime,
            interface=args.interface, log_directory=args.log_directory,
        )
        cluster.adapt(minimum=0, maximum=args.jobs)
    else:
        cluster = LocalCluster(n_workers=2, threads_per_worker=1)
    with cluster, Client(cluster) as client:
        experiment = run(client, args.trials, args.in_flight, args.storage)
        history = experiment.history
        statuses = {str(s): int((history.status == s).sum()) for s in np.unique(history.status.values)}
        print(f"trials: {statuses}; best: {experiment.best}")
    return 0 if statuses.get("completed", 0) >= args.trials else 1


if __name__ == "__main__":
    sys.exit(main())
