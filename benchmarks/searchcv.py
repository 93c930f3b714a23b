"""SearchCV against scikit-learn's RandomizedSearchCV (and dask-ml's, if installed), same budget.

Every search tunes the same estimator on the same data with the same folds and the same
number of candidates, on the same Dask cluster (scikit-learn's search through joblib's Dask
backend, so that every contender uses the same workers); scikit-learn's search also runs
as most users run it, on joblib's own process pool with as many processes as workers.  Each prints one JSON line: the best
cross-validated score, the score of the refitted model on a held-out test set, wall time;
a summary line gives daskhpo's ratios to RandomizedSearchCV (score difference, time ratio),
averaged over the repeats (different seeds).

    python benchmarks/searchcv.py [--trials 40] [--repeats 3] [--workers 2] [--quick]
    python benchmarks/searchcv.py --dask-ml-python /tmp/dml-venv/bin/python [--max-iter 27] [--repeats 3]

Task: an SVC (``C``, ``gamma``, log-uniform) on scikit-learn's digits, 3-fold CV; a
gradient-boosting variant (``--task hgb``) searches 4 parameters of
HistGradientBoostingClassifier on the breast-cancer data; ``--task sgd`` an
SGDClassifier (``alpha``, ``penalty``) on digits, which has ``partial_fit``, so that dask-ml's
HyperbandSearchCV (when installed) runs too, with ``max_iter=`` the trials (its own budget
rule: it trains more models for fewer epochs, on one train/validation split, not k folds).
dask-ml 2025.1's HyperbandSearchCV fails on dask 2026: ``--dask-ml-python`` runs it in another
interpreter against SearchCV at the same training work (see ``benchmarks/searchcv_hyperband.py``).

SearchCV is given what RandomizedSearchCV is given (the same ``scipy.stats`` distributions,
``n_iter``, ``n_jobs``), as a user switching would type it.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time

import joblib
import numpy as np
from distributed import Client, LocalCluster
from scipy.stats import loguniform, randint, uniform
from searchcv_hyperband import add_arguments, compare  # benchmarks/ is on sys.path when run as a script
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import KFold, RandomizedSearchCV, train_test_split
from sklearn.svm import SVC

from daskhpo.integrations.sklearn import SearchCV

TASKS = {
    "svc": (
        load_digits,
        lambda: SVC(),
        {"C": "loguniform(1e-2, 1e3)", "gamma": "loguniform(1e-5, 1e-1)"},
        {"C": loguniform(1e-2, 1e3), "gamma": loguniform(1e-5, 1e-1)},
    ),
    "hgb": (
        load_breast_cancer,
        lambda: HistGradientBoostingClassifier(max_iter=50),
        {"learning_rate": "loguniform(1e-3, 1)", "max_leaf_nodes": "randint(4, 64)",
         "min_samples_leaf": "randint(2, 50)", "l2_regularization": "uniform(0, 1)"},
        {"learning_rate": loguniform(1e-3, 1), "max_leaf_nodes": randint(4, 65),
         "min_samples_leaf": randint(2, 51), "l2_regularization": uniform(0, 1)},
    ),
    "sgd": (
        load_digits,
        lambda: SGDClassifier(tol=1e-3, random_state=0),
        {"alpha": "loguniform(1e-6, 1e-1)", "penalty": "choices(['l2', 'l1', 'elasticnet'])"},
        {"alpha": loguniform(1e-6, 1e-1), "penalty": ["l2", "l1", "elasticnet"]},
    ),
}


def run(name: str, make, X, y, X_test, y_test) -> dict:
    start = time.perf_counter()
    search = make().fit(X, y)
    wall = time.perf_counter() - start
    return {"search": name, "best_cv_score": float(search.best_score_),
            "test_score": float(search.score(X_test, y_test)), "wall_s": wall,
            "candidates": len(search.cv_results_["params"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="svc")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--algorithm", default="tpe")
    parser.add_argument("--quick", action="store_true", help="8 trials, 1 repeat")
    add_arguments(parser)
    args = parser.parse_args()
    if args.dask_ml_python:  # HyperbandSearchCV in that interpreter, SearchCV here: searchcv_hyperband.py
        compare(args)
        return
    if args.quick:
        args.trials, args.repeats = 8, 1
    logging.basicConfig(level=logging.WARNING)
    load, estimator, space, distributions = TASKS[args.task]
    X_all, y_all = load(return_X_y=True)
    X, X_test, y, y_test = train_test_split(X_all, y_all, test_size=0.25, random_state=0, stratify=y_all)
    try:
        from dask_ml.model_selection import HyperbandSearchCV
        from dask_ml.model_selection import RandomizedSearchCV as DaskRandomizedSearchCV
    except ImportError:
        DaskRandomizedSearchCV = HyperbandSearchCV = None

    results: dict[str, list[dict]] = {}
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.run(lambda: None)  # workers up before the clocks start
        for seed in range(args.repeats):
            cv = KFold(3, shuffle=True, random_state=seed)
            contenders = {
                # what a RandomizedSearchCV user types, plus the algorithm
                f"daskhpo.SearchCV({args.algorithm})": lambda cv=cv, seed=seed: SearchCV(
                    estimator(), distributions, algorithm=args.algorithm, n_iter=args.trials, cv=cv,
                    random_state=seed, n_jobs=args.workers),
                "sklearn.RandomizedSearchCV": lambda cv=cv, seed=seed: _JoblibDask(RandomizedSearchCV(
                    estimator(), distributions, n_iter=args.trials, cv=cv, random_state=seed, n_jobs=-1)),
                # as most users run it: joblib's own process pool, as many processes as workers
                "sklearn.RandomizedSearchCV(loky)": lambda cv=cv, seed=seed: RandomizedSearchCV(
                    estimator(), distributions, n_iter=args.trials, cv=cv, random_state=seed, n_jobs=args.workers),
            }
            if DaskRandomizedSearchCV is not None:
                contenders["dask_ml.RandomizedSearchCV"] = lambda cv=cv, seed=seed: DaskRandomizedSearchCV(
                    estimator(), distributions, n_iter=args.trials, cv=cv, random_state=seed, scheduler=client)
            if HyperbandSearchCV is not None and hasattr(estimator(), "partial_fit"):
                contenders["dask_ml.HyperbandSearchCV"] = lambda seed=seed: _Hyperband(HyperbandSearchCV(
                    estimator(), distributions, max_iter=args.trials, random_state=seed))
            for name, make in contenders.items():
                try:
                    result = run(name, make, X, y, X_test, y_test)
                except Exception as exc:  # e.g. dask-ml 2025.1's Hyperband on a newer dask
                    print(json.dumps({"search": name, "seed": seed, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
                    continue
                result.update({"task": args.task, "seed": seed, "trials": args.trials, "workers": args.workers})
                print(json.dumps(result), flush=True)
                results.setdefault(name, []).append(result)

    ours = results[f"daskhpo.SearchCV({args.algorithm})"]
    base = results["sklearn.RandomizedSearchCV"]
    summary = {
        "summary": args.task,
        "trials": args.trials,
        "repeats": args.repeats,
        "best_cv_score": {k: statistics.mean(r["best_cv_score"] for r in v) for k, v in results.items()},
        "test_score": {k: statistics.mean(r["test_score"] for r in v) for k, v in results.items()},
        "wall_s": {k: statistics.mean(r["wall_s"] for r in v) for k, v in results.items()},
        "cv_score_minus_randomized": statistics.mean(a["best_cv_score"] - b["best_cv_score"] for a, b in zip(ours, base)),
        "wall_ratio_to_randomized": statistics.mean(a["wall_s"] / b["wall_s"] for a, b in zip(ours, base)),
        "dask_ml": DaskRandomizedSearchCV is not None,
    }
    print(json.dumps(summary))


class _Hyperband:
    """dask-ml's HyperbandSearchCV: partial_fit needs the classes up front."""

    def __init__(self, search) -> None:
        self.search = search

    def fit(self, X, y):
        self.search.fit(X, y, classes=np.unique(y))
        return self.search


class _JoblibDask:
    """Fit a scikit-learn search with joblib's Dask backend (on the current client)."""

    def __init__(self, search) -> None:
        self.search = search

    def fit(self, X, y):
        with joblib.parallel_backend("dask"):
            self.search.fit(X, y)
        return self.search


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
