"""Model cost per suggestion at a given history, next to Optuna measured in the same run.

For each history size, an optimizer is told ``history`` random completed trials of an
8-dimensional mixed space (3 real, 1 log-real, 2 integer, 2 categorical), then timed over
``--asks`` rounds of ask + tell (the trial it asked for completes at once, so the history
grows by one per round).  Optuna's ``TPESampler(multivariate=True)`` and ``GPSampler`` get
the same history (``study.add_trials``) and the same rounds (``study.ask`` + ``study.tell``).
Ratios are daskhpo / Optuna (below 1: daskhpo is cheaper).

ASHA and Hyperband (reports mode) are timed per ``report`` (+ ask + tell) with
``history`` trials already judged at the first rung.

    pip install optuna    # the bench extra; only this script imports it
    python benchmarks/optimizer_cost.py                      # histories 250 1000 10000
    python benchmarks/optimizer_cost.py --histories 1000 --algorithms tpe optuna-tpe
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from utilization import SPACE, value  # noqa: E402

from daskhpo.optimizers import Report, Trial, make_optimizer  # noqa: E402
from daskhpo.space import Space  # noqa: E402

ALGORITHMS = ["tpe", "gp", "cmaes", "sobol", "motpe", "asha", "hyperband", "optuna-tpe", "optuna-gp"]
GOALS = {("tpe", 1000): 10.0, ("tpe", 10000): 15.0, ("gp", 1000): 100.0}


def history_of(n: int, seed: int = 0) -> list[dict]:
    space = Space(SPACE)
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


def told(trial_id: int, params: dict, multi_objective: bool) -> Trial:
    """A completed trial; for a multi-objective algorithm with two conflicting objectives
    (the value, and the value with the first two coordinates mirrored)."""
    if not multi_objective:
        return Trial(trial_id, params, "completed", value(params))
    mirrored = {**params, "x0": -params["x0"], "x1": -params["x1"]}
    return Trial(trial_id, params, "completed", float("nan"), values=(value(params), value(mirrored)))


def time_daskhpo(algorithm: str, n: int, asks: int, pending: int = 0) -> list[float]:
    space = Space(SPACE)
    opt = make_optimizer(algorithm, space, seed=0)
    multi = algorithm == "motpe"
    for i, p in enumerate(history_of(n)):
        opt.tell(told(i, p, multi))
    for i in range(n, n + pending):  # asked and never told: that many trials in flight
        opt.ask(i)
    times = []
    for j in range(asks):
        trial_id = n + pending + j
        t0 = time.perf_counter()
        s = opt.ask(trial_id)
        opt.tell(told(trial_id, s.params, multi))
        times.append(time.perf_counter() - t0)
    return times


def time_multifidelity(algorithm: str, n: int, asks: int) -> list[float]:
    space = Space(SPACE)
    opt = make_optimizer((algorithm, {"min_resource": 1, "max_resource": 81, "reduction_factor": 3}), space, seed=0)
    rng = np.random.default_rng(0)
    for i in range(n):
        s = opt.ask(i)
        opt.report(Report(i, s.params, 1.0, float(rng.random())))
        opt.tell(Trial(i, s.params, "pruned", float(rng.random()), last_step=1.0))
    times = []
    for j in range(asks):
        trial_id = n + j
        t0 = time.perf_counter()
        s = opt.ask(trial_id)
        opt.report(Report(trial_id, s.params, 1.0, float(rng.random())))
        opt.tell(Trial(trial_id, s.params, "pruned", float(rng.random()), last_step=1.0))
        times.append(time.perf_counter() - t0)
    return times


def _optuna_distributions():
    import optuna

    return {
        "x0": optuna.distributions.FloatDistribution(-5, 5),
        "x1": optuna.distributions.FloatDistribution(-5, 5),
        "x2": optuna.distributions.FloatDistribution(-5, 5),
        "lr": optuna.distributions.FloatDistribution(1e-5, 1, log=True),
        "n": optuna.distributions.IntDistribution(1, 64),
        "depth": optuna.distributions.IntDistribution(1, 10),
        "act": optuna.distributions.CategoricalDistribution(["relu", "tanh", "gelu"]),
        "opt": optuna.distributions.CategoricalDistribution(["sgd", "adam"]),
    }


def time_optuna(algorithm: str, n: int, asks: int) -> list[float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if algorithm == "optuna-tpe":
        sampler = optuna.samplers.TPESampler(multivariate=True, seed=0)
    else:
        sampler = optuna.samplers.GPSampler(seed=0)
    dists = _optuna_distributions()
    study = optuna.create_study(sampler=sampler)
    study.add_trials([optuna.trial.create_trial(params=p, distributions=dists, value=value(p)) for p in history_of(n)])
    times = []
    for _ in range(asks):
        t0 = time.perf_counter()
        trial = study.ask(dists)
        study.tell(trial, value(trial.params))
        times.append(time.perf_counter() - t0)
    return times


def measure(algorithm: str, n: int, asks: int, pending: int = 0) -> list[float]:
    if algorithm.startswith("optuna"):
        return time_optuna(algorithm, n, asks)
    if algorithm in ("asha", "hyperband"):
        return time_multifidelity(algorithm, n, asks)
    return time_daskhpo(algorithm, n, asks, pending)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithms", nargs="+", choices=ALGORITHMS, default=ALGORITHMS)
    parser.add_argument("--histories", nargs="+", type=int, default=[250, 1000, 10000])
    parser.add_argument("--asks", type=int, default=20)
    parser.add_argument("--optuna-gp-max", type=int, default=1000, help="skip Optuna's GP above this history (slow)")
    parser.add_argument("--pending", type=int, default=0,
                        help="daskhpo's ask/tell algorithms: trials asked and never told before the timed rounds")
    parser.add_argument("--label", default="")
    args = parser.parse_args(argv)
    logging.getLogger("daskhpo").setLevel(logging.WARNING)
    table: dict[tuple[str, int], float] = {}
    for n in args.histories:
        # peers first, so that each of ours is printed with its ratio
        for algorithm in sorted(args.algorithms, key=lambda a: not a.startswith("optuna")):
            if algorithm == "optuna-gp" and n > args.optuna_gp_max:
                continue
            try:
                times = measure(algorithm, n, args.asks, args.pending)
            except ImportError as exc:  # Optuna's GPSampler needs torch
                print(json.dumps({"benchmark": "optimizer_cost", "algorithm": algorithm, "history": n,
                                  "skipped": str(exc), "label": args.label}), flush=True)
                continue
            ms = 1e3 * statistics.median(times)
            table[(algorithm, n)] = ms
            result = {"benchmark": "optimizer_cost", "algorithm": algorithm, "history": n, "asks": args.asks,
                      "pending": 0 if algorithm.startswith("optuna") or algorithm in ("asha", "hyperband") else args.pending,
                      "median_ms": round(ms, 3), "p90_ms": round(1e3 * float(np.percentile(times, 90)), 3),
                      "label": args.label}
            goal = GOALS.get((algorithm, n))
            if goal is not None:
                result["goal_ms"], result["meets_goal"] = goal, ms <= goal
            peer = {"tpe": "optuna-tpe", "gp": "optuna-gp"}.get(algorithm)
            if peer and (peer, n) in table:
                result[f"ratio_to_{peer}"] = round(ms / table[(peer, n)], 3)
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
