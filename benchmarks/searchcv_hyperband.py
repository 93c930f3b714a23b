"""SearchCV against dask-ml's HyperbandSearchCV, same estimator, data, distributions and training work.

dask-ml 2025.1's ``HyperbandSearchCV`` fails on dask 2026 (an asynchronous client inside
``dask.compute``), so it runs in another interpreter (a virtual environment with a dask it
works with), given as ``--dask-ml-python``; every contender runs in its own subprocess
(``--one NAME``, one JSON line), with its own 2-worker ``LocalCluster`` started before the
clock, and the contenders are interleaved seed by seed.

    python benchmarks/searchcv.py --dask-ml-python /tmp/dml-venv/bin/python [--max-iter 27] [--repeats 3]

Task: ``SGDClassifier`` (``alpha`` log-uniform, ``penalty`` one of three) on scikit-learn's
digits, 75/25 split (the 25 % is the held-out test set, never seen by a search).

Budget, in epochs over the search's training data (one ``partial_fit`` call is one epoch
over the one block of a NumPy input; ``fit`` with ``max_iter=R, tol=None`` is R epochs):

* ``dask_ml.HyperbandSearchCV(max_iter=R)``: its own plan (R=27: 49 models, 357 ``partial_fit``
  calls), on one train/validation split (80/20), no refit (``best_estimator_`` is the model
  trained during the search).
* ``daskhpo.SearchCV(budget)``: full fits of ``R`` epochs on the same kind of split
  (``ShuffleSplit(1, test_size=0.2)``), ``n_iter = round(partial_fit_calls / R)`` candidates
  (357/27: 13, i.e. 351 epochs), then a refit on all the training data (R more epochs, of
  1/0.8 the data).  SearchCV has no multi-fidelity (``partial_fit``) mode: it spends the same
  work on fewer, fully trained candidates.
* ``daskhpo.SearchCV(configs)``: as many candidates as Hyperband's models (49), each fully
  trained: the same number of configurations at about 3.7x the training work.

The daskhpo contenders run in this interpreter (``sys.executable``) and, with
``--daskhpo-in-dask-ml-python``, also in the dask-ml interpreter (same dask as dask-ml,
the daskhpo of this checkout on ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTIONS = "alpha: loguniform(1e-6, 1e-1); penalty: ['l2', 'l1', 'elasticnet']"


def _data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X_all, y_all = load_digits(return_X_y=True)
    return train_test_split(X_all, y_all, test_size=0.25, random_state=0, stratify=y_all)


def _distributions() -> dict:
    from scipy.stats import loguniform

    return {"alpha": loguniform(1e-6, 1e-1), "penalty": ["l2", "l1", "elasticnet"]}


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for name in ("dask", "distributed", "dask-ml", "scikit-learn", "numpy", "scipy", "pandas"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def _one(name: str, seed: int, max_iter: int, n_iter: int, workers: int, algorithm: str) -> dict:
    """Run one contender in this interpreter; the clock covers ``fit`` only."""
    from distributed import Client, LocalCluster
    from sklearn.linear_model import SGDClassifier
    from sklearn.model_selection import ShuffleSplit

    X, X_test, y, y_test = _data()
    load = os.getloadavg()[0]
    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.run(lambda: None)  # workers up before the clock starts
        if name == "dask_ml.HyperbandSearchCV":
            from dask_ml.model_selection import HyperbandSearchCV

            search = HyperbandSearchCV(SGDClassifier(tol=1e-3, random_state=0), _distributions(),
                                       max_iter=max_iter, random_state=seed)
            start = time.perf_counter()
            search.fit(X, y, classes=np.unique(y))
            wall = time.perf_counter() - start
            calls = int(search.metadata_["partial_fit_calls"])
            extra = {"models": int(search.metadata_["n_models"]), "partial_fit_calls": calls,
                     # one block: each call is one epoch over the 80 % training part
                     "epochs_x_train_fraction": round(calls * 0.8, 1), "refit_epochs": 0,
                     # what SearchCV's refit does, outside the clock: the held-out score the
                     # chosen parameters get when trained like SearchCV's best_estimator_
                     "test_score_refit": refit_test_score(search.best_params_, max_iter)}
        else:
            from daskhpo.integrations.sklearn import SearchCV

            search = SearchCV(SGDClassifier(max_iter=max_iter, tol=None, random_state=0), _distributions(),
                              algorithm=algorithm, n_iter=n_iter, random_state=seed, n_jobs=workers,
                              cv=ShuffleSplit(n_splits=1, test_size=0.2, random_state=seed))
            start = time.perf_counter()
            search.fit(X, y)
            wall = time.perf_counter() - start
            fits = len(search.cv_results_["params"])
            extra = {"models": fits, "partial_fit_calls": 0, "fit_epochs": fits * max_iter,
                     "epochs_x_train_fraction": round(fits * max_iter * 0.8, 1),
                     "refit_epochs": max_iter, "refit_time_s": float(search.refit_time_)}
    return {"search": name, "seed": seed, "wall_s": wall, "best_val_score": float(search.best_score_),
            "test_score": float(search.score(X_test, y_test)), "best_params": _plain(search.best_params_),
            "load_1min": load, **extra, "env": _versions()}


def refit_test_score(params: dict, max_iter: int) -> float:
    """Held-out score of ``params`` fitted as SearchCV refits: ``max_iter`` epochs on all the training data."""
    from sklearn.linear_model import SGDClassifier

    X, X_test, y, y_test = _data()
    estimator = SGDClassifier(max_iter=max_iter, tol=None, random_state=0, **params).fit(X, y)
    return float(estimator.score(X_test, y_test))


def _plain(params: dict) -> dict:
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in params.items()}


def _spawn(python: str, name: str, seed: int, args: argparse.Namespace, n_iter: int) -> dict:
    command = [python, str(Path(__file__).resolve()), "--one", name, "--seed", str(seed),
               "--max-iter", str(args.max_iter), "--n-iter", str(n_iter), "--workers", str(args.workers),
               "--algorithm", args.algorithm]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        return {"search": name, "seed": seed, "python": python,
                "error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    result = json.loads(lines[-1])
    result["python"] = python
    return result


def compare(args: argparse.Namespace) -> None:
    """Interleave the contenders seed by seed; print each run and a median summary."""
    runs: dict[str, list[dict]] = {}
    for seed in range(args.repeats):
        hyperband = _spawn(args.dask_ml_python, "dask_ml.HyperbandSearchCV", seed, args, 0)
        print(json.dumps(hyperband), flush=True)
        if "error" in hyperband:
            raise SystemExit(f"--dask-ml-python {args.dask_ml_python}: HyperbandSearchCV failed: {hyperband['error']}")
        runs.setdefault("dask_ml.HyperbandSearchCV", []).append(hyperband)
        budget = max(1, round(hyperband["partial_fit_calls"] / args.max_iter))
        pythons = {"": sys.executable}
        if args.daskhpo_in_dask_ml_python:
            pythons[" [dask-ml env]"] = args.dask_ml_python
        for suffix, python in pythons.items():
            for label, n_iter in (("budget", budget), ("configs", hyperband["models"])):
                name = f"daskhpo.SearchCV({args.algorithm}, {label})"
                result = _spawn(python, name, seed, args, n_iter)
                print(json.dumps(result), flush=True)
                if "error" not in result:
                    runs.setdefault(name + suffix, []).append(result)
    summary = {name: {key: statistics.median(r[key] for r in rs)
                      for key in ("wall_s", "best_val_score", "test_score", "models", "epochs_x_train_fraction",
                                  "load_1min") + ("test_score_refit",) * ("test_score_refit" in rs[0])} | {"runs": len(rs), "dask": rs[0]["env"]["dask"]}
               for name, rs in runs.items()}
    print(json.dumps({"summary": "hyperband", "max_iter": args.max_iter, "repeats": args.repeats,
                      "median": summary}))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dask-ml-python", help="an interpreter with dask-ml and a dask its HyperbandSearchCV "
                        "works with: compare SearchCV with HyperbandSearchCV (see benchmarks/searchcv_hyperband.py)")
    parser.add_argument("--daskhpo-in-dask-ml-python", action="store_true",
                        help="also run daskhpo's SearchCV in the --dask-ml-python interpreter")
    parser.add_argument("--max-iter", type=int, default=27, help="HyperbandSearchCV's max_iter (epochs per model)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--n-iter", type=int, default=0, help=argparse.SUPPRESS)


def run_one(args: argparse.Namespace) -> None:
    np.seterr(all="ignore")
    print(json.dumps(_one(args.one, args.seed, args.max_iter, args.n_iter, args.workers, args.algorithm)), flush=True)


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(_parser)
    _parser.add_argument("--repeats", type=int, default=3)
    _parser.add_argument("--workers", type=int, default=2)
    _parser.add_argument("--algorithm", default="tpe")
    _args = _parser.parse_args()
    if _args.one:
        run_one(_args)
    elif _args.dask_ml_python:
        compare(_args)
    else:
        _parser.error("give --dask-ml-python (or run benchmarks/searchcv.py)")
