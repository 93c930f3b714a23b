"""Conditional model selection: daskhpo's tpe (and random search) against Optuna's
define-by-run TPE, with the same budget, measured in the same run.

The space picks a model and then its own hyperparameters (``when=``)::

    model    choices(['svm', 'forest', 'knn'])
    svm:     kernel choices(['rbf', 'poly']), C loguniform(1e-3, 1e4),
             gamma loguniform(1e-6, 10), degree randint(2, 4) (poly only: nested)
    forest:  n_estimators randint(10, 60), max_depth loguniform(2, 32, discrete=True),
             max_features uniform(0.05, 1)
    knn:     n_neighbors randint(1, 50), weights choices(['uniform', 'distance'])

The objective is the 3-fold cross-validated error rate on scikit-learn's ``digits`` (fixed
folds, fixed forest seed: a deterministic function of the configuration).  Optuna's
objective asks for the same parameters in the same branches, define-by-run
(``TPESampler(seed=...)``, its defaults: univariate, each parameter's density built from the
trials where it was suggested).  daskhpo runs through a real experiment on the in-process
:class:`~daskhpo.engine.FakeExecutor`, one trial at a time, like Optuna's ``optimize``.

Prints one JSON object per run and per summary line; writes
``benchmarks/results/conditional.md``.  Evaluations are cached per configuration within a
process (the objective is deterministic), which saves CPU when algorithms revisit points.

Usage::

    nice -n 10 python benchmarks/conditional.py --seeds 5 --budget 30
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import math
import statistics
import time
import warnings
from collections import Counter
from typing import Any

import numpy as np

import daskhpo
from daskhpo.engine import FakeExecutor

ALGORITHMS = ["random", "tpe", "evolution", "gp", "optuna-tpe"]
DEFAULT = ["random", "tpe", "optuna-tpe"]

SPACE = {
    "model": "choices(['svm', 'forest', 'knn'])",
    "kernel": "choices(['rbf', 'poly'], when={'model': 'svm'})",
    "C": "loguniform(1e-3, 1e4, when={'model': 'svm'})",
    "gamma": "loguniform(1e-6, 10, when={'model': 'svm'})",
    "degree": "randint(2, 4, when={'kernel': 'poly'})",
    "n_estimators": "randint(10, 60, when={'model': 'forest'})",
    "max_depth": "loguniform(2, 32, discrete=True, when={'model': 'forest'})",
    "max_features": "uniform(0.05, 1, when={'model': 'forest'})",
    "n_neighbors": "randint(1, 50, when={'model': 'knn'})",
    "weights": "choices(['uniform', 'distance'], when={'model': 'knn'})",
}

_DATA: Any = None
_CACHE: dict[tuple, float] = {}


def cv_error(**params: Any) -> float:
    """3-fold CV error rate of the configured model on digits."""
    global _DATA
    from sklearn.datasets import load_digits
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC

    key = tuple(sorted(params.items()))
    if key in _CACHE:
        return _CACHE[key]
    if _DATA is None:
        _DATA = load_digits(return_X_y=True)
    x, y = _DATA
    model_name = params["model"]
    if model_name == "svm":
        model = SVC(kernel=params["kernel"], C=params["C"], gamma=params["gamma"],
                    degree=params.get("degree", 3))
    elif model_name == "forest":
        model = RandomForestClassifier(n_estimators=params["n_estimators"], max_depth=params["max_depth"],
                                       max_features=params["max_features"], random_state=0, n_jobs=1)
    else:
        model = KNeighborsClassifier(n_neighbors=params["n_neighbors"], weights=params["weights"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folds = KFold(3, shuffle=True, random_state=0)
        value = float(1.0 - cross_val_score(model, x, y, cv=folds).mean())
    _CACHE[key] = value
    return value


def run_daskhpo(algorithm: str, seed: int, budget: int) -> tuple[list[float], list[str]]:
    exp = daskhpo.build_experiment(f"cond-{algorithm}", SPACE, algorithm=algorithm, seed=seed)
    exp.run(FakeExecutor(cv_error, slots=1), max_trials=budget)
    records = sorted(exp.records(), key=lambda r: r.trial)
    exp.close()
    return [r.objective for r in records], [r.params["model"] for r in records]


def run_optuna(seed: int, budget: int) -> tuple[list[float], list[str]]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    values: list[float] = []
    models: list[str] = []

    def objective(trial: optuna.Trial) -> float:
        model = trial.suggest_categorical("model", ["svm", "forest", "knn"])
        params: dict[str, Any] = {"model": model}
        if model == "svm":
            params["kernel"] = trial.suggest_categorical("kernel", ["rbf", "poly"])
            params["C"] = trial.suggest_float("C", 1e-3, 1e4, log=True)
            params["gamma"] = trial.suggest_float("gamma", 1e-6, 10.0, log=True)
            if params["kernel"] == "poly":
                params["degree"] = trial.suggest_int("degree", 2, 4)
        elif model == "forest":
            params["n_estimators"] = trial.suggest_int("n_estimators", 10, 60)
            params["max_depth"] = trial.suggest_int("max_depth", 2, 32, log=True)
            params["max_features"] = trial.suggest_float("max_features", 0.05, 1.0)
        else:
            params["n_neighbors"] = trial.suggest_int("n_neighbors", 1, 50)
            params["weights"] = trial.suggest_categorical("weights", ["uniform", "distance"])
        value = cv_error(**params)
        values.append(value)
        models.append(model)
        return value

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=budget)
    return values, models


def _best_so_far(values: list[float]) -> list[float]:
    return list(np.minimum.accumulate(np.asarray(values, dtype=float)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=30)
    parser.add_argument("--algorithms", nargs="+", choices=ALGORITHMS, default=DEFAULT)
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results", "conditional.md"))
    args = parser.parse_args()
    runs = []
    for seed in range(args.seeds):
        for algorithm in args.algorithms:
            start = time.perf_counter()
            if algorithm == "optuna-tpe":
                values, models = run_optuna(seed, args.budget)
            else:
                values, models = run_daskhpo(algorithm, seed, args.budget)
            run = {
                "benchmark": "conditional", "algorithm": algorithm, "seed": seed,
                "best": _best_so_far(values), "models": dict(Counter(models)),
                "late_models": dict(Counter(models[args.budget // 2:])),
                "seconds": round(time.perf_counter() - start, 2),
            }
            runs.append(run)
            print(json.dumps(run), flush=True)
    checkpoints = sorted({args.budget // 2, args.budget})
    summary = []
    for algorithm in args.algorithms:
        mine = [r for r in runs if r["algorithm"] == algorithm]
        for n in checkpoints:
            errors = [r["best"][n - 1] for r in mine]
            line = {
                "benchmark": "conditional-summary", "algorithm": algorithm, "trials": n, "seeds": len(mine),
                "median_error": float(np.median(errors)), "q25": float(np.percentile(errors, 25)),
                "q75": float(np.percentile(errors, 75)), "mean_error": float(np.mean(errors)),
                "late_svm_share": statistics.mean(r["late_models"].get("svm", 0) / (args.budget - args.budget // 2)
                                                  for r in mine),
            }
            summary.append(line)
            print(json.dumps(line), flush=True)
    if args.output:
        with open(args.output, "w") as f:
            f.write(markdown(summary, runs, args))


def markdown(summary: list[dict], runs: list[dict], args: argparse.Namespace) -> str:
    lines = [
        "# Conditional model-selection benchmark",
        "",
        f"Produced by `nice -n 10 python benchmarks/conditional.py --seeds {args.seeds} --budget {args.budget}` "
        f"({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, a machine shared with other work).",
        "SVC / random forest / kNN on scikit-learn's digits, 3-fold CV error rate (lower is better), "
        "best after the given number of trials, median [25th, 75th percentile] and mean over seeds; "
        "one trial at a time. `optuna-tpe` is Optuna 5's define-by-run `TPESampler` (defaults); "
        "`late svm share` is the fraction of the second half of the trials spent on the SVM branch "
        "(the best model family on digits).",
        "",
        "| algorithm | trials | median error [IQR] | mean error | late svm share |",
        "|---|---|---|---|---|",
    ]
    for s in summary:
        lines.append(f"| {s['algorithm']} | {s['trials']} | {s['median_error']:.4f} [{s['q25']:.4f}, {s['q75']:.4f}] "
                     f"| {s['mean_error']:.4f} | {s['late_svm_share']:.2f} |")
    lines += ["", "Median wall time of one run (s), objective included:", "", "| algorithm | seconds |", "|---|---|"]
    for algorithm in args.algorithms:
        seconds = [r["seconds"] for r in runs if r["algorithm"] == algorithm]
        lines.append(f"| {algorithm} | {statistics.median(seconds):.1f} |")
    finite = [math.isfinite(v) for r in runs for v in r["best"]]
    assert all(finite), "a run has a non-finite error"
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
