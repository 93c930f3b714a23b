"""Constrained optimization: constraint-aware tpe and gp against the penalty, random search and
Optuna's constrained TPE, measured in the same run.

The objective returns ``{"objective": f, "constraints": [c1, ...]}`` (feasible when every
``c <= 0``).  daskhpo's algorithms run through a real experiment on the in-process
:class:`~daskhpo.engine.FakeExecutor` (one trial at a time), so they are told what the
experiment tells them:

* ``tpe`` and ``gp``: constraint-aware (``handles_constraints``): the raw objective and the
  constraint values; ``tpe-pof`` is ``tpe`` with its probability-of-feasibility factor on
  (``feasibility_weight=1``);
* ``tpe-penalty`` and ``gp-penalty``: the same algorithms with constraints hidden from them, so
  they see only the experiment's penalty (an infeasible trial is told as worse than every
  trial before it): what every algorithm got before constraint awareness;
* ``random``: random search;
* ``optuna-tpe``: Optuna's ``TPESampler(constraints_func=...)`` (its defaults otherwise).

Problems (both with a known constrained optimum):

* ``gramacy``: Gramacy et al. (2016)'s toy problem, minimize ``x1 + x2`` on ``[0, 1]^2``
  subject to a sinusoidal and a circular constraint; optimum 0.5998 at (0.1954, 0.4044).
* ``g04``: Himmelblau's problem (CEC 2006 G04), 5 dimensions, 6 constraints; optimum
  -30665.539.

For each problem, algorithm and seed the script records the best *feasible* objective after
each checkpoint of the budget; it prints one JSON object per run and per summary line, and
writes ``benchmarks/results/constrained.md`` (median regret and interquartile range over
seeds, and how many seeds found a feasible point).

Usage::

    pip install optuna    # the bench extra; only this script imports it
    python benchmarks/constrained.py                       # 10 seeds, every algorithm
    python benchmarks/constrained.py --seeds 3 --algorithms tpe optuna-tpe --problems gramacy
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import dataclasses
import json
import math
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import Pool

import numpy as np

import daskhpo
from daskhpo.engine import FakeExecutor
from daskhpo.optimizers import Trial
from daskhpo.optimizers.gp import GP
from daskhpo.optimizers.tpe import TPE
from daskhpo.space import Space

DASKHPO = ["random", "tpe", "tpe-pof", "tpe-penalty", "gp", "gp-penalty"]
PEERS = ["optuna-tpe"]


# -- problems ------------------------------------------------------------------------------


def gramacy(x1: float, x2: float) -> dict:
    """Gramacy et al. (2016), 'Modeling an augmented Lagrangian for blackbox constrained optimization'."""
    c1 = 1.5 - x1 - 2 * x2 - 0.5 * math.sin(2 * math.pi * (x1**2 - 2 * x2))
    c2 = x1**2 + x2**2 - 1.5
    return {"objective": x1 + x2, "constraints": [c1, c2]}


def g04(x1: float, x2: float, x3: float, x4: float, x5: float) -> dict:
    """CEC 2006 G04 (Himmelblau's nonlinear problem)."""
    f = 5.3578547 * x3**2 + 0.8356891 * x1 * x5 + 37.293239 * x1 - 40792.141
    u = 85.334407 + 0.0056858 * x2 * x5 + 0.0006262 * x1 * x4 - 0.0022053 * x3 * x5
    v = 80.51249 + 0.0071317 * x2 * x5 + 0.0029955 * x1 * x2 + 0.0021813 * x3**2
    w = 9.300961 + 0.0047026 * x3 * x5 + 0.0012547 * x1 * x3 + 0.0019085 * x3 * x4
    return {"objective": f, "constraints": [u - 92, -u, v - 110, 90 - v, w - 25, 20 - w]}


@dataclass(frozen=True)
class Problem:
    name: str
    space: dict
    fn: Callable[..., dict]
    optimum: float
    budget: int


PROBLEMS = {
    "gramacy": Problem("gramacy", {"x1": "uniform(0, 1)", "x2": "uniform(0, 1)"}, gramacy, 0.5998, 60),
    "g04": Problem(
        "g04",
        {"x1": "uniform(78, 102)", "x2": "uniform(33, 45)", **{f"x{i}": "uniform(27, 45)" for i in (3, 4, 5)}},
        g04,
        -30665.539,
        80,
    ),
}


# -- daskhpo ---------------------------------------------------------------------------------


class _Blind:
    """Mixin: hide the constraints, so the algorithm sees only the experiment's penalty."""

    handles_constraints = False

    def tell(self, trial: Trial) -> None:
        super().tell(dataclasses.replace(trial, metrics={}))  # type: ignore[misc]


class TPEPenalty(_Blind, TPE):
    """TPE as it was before it knew constraints."""


class GPPenalty(_Blind, GP):
    """GP as it was before it knew constraints."""


def run_daskhpo(problem: Problem, algorithm: str, seed: int) -> list[float]:
    """The best feasible objective after each trial (inf until one is feasible)."""
    space = Space(problem.space)
    n_initial = {"n_initial": 10}
    optimizer = {
        "random": lambda: "random",
        "tpe": lambda: ("tpe", n_initial),
        "tpe-pof": lambda: ("tpe", {**n_initial, "feasibility_weight": 1.0}),
        "tpe-penalty": lambda: TPEPenalty(space, seed=seed, **n_initial),
        "gp": lambda: ("gp", n_initial),
        "gp-penalty": lambda: GPPenalty(space, seed=seed, **n_initial),
    }[algorithm]()
    exp = daskhpo.build_experiment(f"{problem.name}-{algorithm}", problem.space, algorithm=optimizer, seed=seed)
    exp.run(FakeExecutor(problem.fn, slots=1), max_trials=problem.budget)
    records = sorted(exp.records(), key=lambda r: r.trial)
    exp.close()
    return _best_so_far([(r.objective, r.feasible) for r in records])


def run_optuna(problem: Problem, seed: int) -> list[float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    space = Space(problem.space)
    results: list[tuple[float, bool]] = []

    def constraints(trial: optuna.trial.FrozenTrial) -> list[float]:
        return trial.user_attrs["constraints"]

    def objective(trial: optuna.Trial) -> float:
        params = {name: trial.suggest_float(name, dim.low, dim.high) for name, dim in space.items()}
        out = problem.fn(**params)
        trial.set_user_attr("constraints", out["constraints"])
        results.append((out["objective"], all(c <= 0 for c in out["constraints"])))
        return out["objective"]

    sampler = optuna.samplers.TPESampler(seed=seed, constraints_func=constraints)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=problem.budget)
    return _best_so_far(results)


def _best_so_far(values: list[tuple[float, bool]]) -> list[float]:
    out, best = [], math.inf
    for value, feasible in values:
        if feasible:
            best = min(best, value)
        out.append(best)
    return out


def run_one(job: tuple[str, str, int]) -> dict:
    problem_name, algorithm, seed = job
    problem = PROBLEMS[problem_name]
    start = time.perf_counter()
    curve = run_optuna(problem, seed) if algorithm == "optuna-tpe" else run_daskhpo(problem, algorithm, seed)
    return {
        "benchmark": "constrained",
        "problem": problem_name,
        "algorithm": algorithm,
        "seed": seed,
        "regret": [v - problem.optimum for v in curve],
        "seconds": round(time.perf_counter() - start, 2),
    }


# -- summary ---------------------------------------------------------------------------------


def _quantiles(values: list[float]) -> tuple[float, float, float]:
    a = np.array(values, dtype=float)
    return tuple(float(np.percentile(a, q)) if np.isfinite(a).any() else math.inf for q in (50, 25, 75))  # type: ignore[return-value]


def summarize(runs: list[dict], checkpoints: dict[str, list[int]]) -> list[dict]:
    out = []
    for (problem, algorithm) in sorted({(r["problem"], r["algorithm"]) for r in runs}):
        mine = [r for r in runs if r["problem"] == problem and r["algorithm"] == algorithm]
        for n in checkpoints[problem]:
            final = [r["regret"][n - 1] for r in mine]
            median, q25, q75 = _quantiles(final)
            out.append({
                "benchmark": "constrained-summary", "problem": problem, "algorithm": algorithm, "trials": n,
                "seeds": len(mine), "found_feasible": sum(math.isfinite(v) for v in final),
                "median_regret": median, "q25": q25, "q75": q75,
                "seconds_per_run": statistics.median(r["seconds"] for r in mine),
            })
    return out


def _fmt(x: float) -> str:
    return "∞" if not math.isfinite(x) else f"{x:.3g}"


def markdown(summary: list[dict], algorithms: list[str], args: argparse.Namespace) -> str:
    lines = [
        "# Constrained optimization benchmark",
        "",
        f"Produced by `python benchmarks/constrained.py --seeds {args.seeds} --jobs {args.jobs}` "
        f"({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, a machine shared with other work).",
        "Regret of the best **feasible** objective (objective minus the known constrained optimum), "
        "median [25th, 75th percentile] over seeds; `k/n` = seeds that found a feasible point "
        "(∞ where fewer than half did). One trial at a time.",
        "`tpe`/`gp` are constraint-aware (told the raw objective and the constraints; `tpe-pof`: with "
        "`feasibility_weight=1`); "
        "`*-penalty` are the same algorithms told only the experiment's penalty (what they got before); "
        "`optuna-tpe` is Optuna's `TPESampler(constraints_func=...)`, defaults otherwise.",
        "",
        "| problem | trials | " + " | ".join(algorithms) + " |",
        "|---|---|" + "---|" * len(algorithms),
    ]
    keys = sorted({(s["problem"], s["trials"]) for s in summary})
    for problem, n in keys:
        row = [problem, str(n)]
        for algorithm in algorithms:
            match = [s for s in summary if (s["problem"], s["trials"], s["algorithm"]) == (problem, n, algorithm)]
            if not match:
                row.append("—")
                continue
            s = match[0]
            row.append(f"{_fmt(s['median_regret'])} [{_fmt(s['q25'])}, {_fmt(s['q75'])}] "
                       f"{s['found_feasible']}/{s['seeds']}")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Median wall time of one run (s):", "",
              "| problem | " + " | ".join(algorithms) + " |", "|---|" + "---|" * len(algorithms)]
    for problem in sorted({s["problem"] for s in summary}):
        row = [problem]
        for algorithm in algorithms:
            match = [s for s in summary if s["problem"] == problem and s["algorithm"] == algorithm]
            row.append(f"{match[0]['seconds_per_run']:.1f}" if match else "—")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--problems", nargs="+", choices=list(PROBLEMS), default=list(PROBLEMS))
    parser.add_argument("--algorithms", nargs="+", choices=DASKHPO + PEERS, default=DASKHPO + PEERS)
    parser.add_argument("--jobs", type=int, default=1, help="processes running seeds concurrently")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results", "constrained.md"))
    args = parser.parse_args()
    jobs = [(p, a, s) for p in args.problems for a in args.algorithms for s in range(args.seeds)]
    runs = []
    if args.jobs > 1:
        with Pool(args.jobs) as pool:
            for result in pool.imap_unordered(run_one, jobs):
                print(json.dumps(result), flush=True)
                runs.append(result)
    else:
        for job in jobs:
            runs.append(run_one(job))
            print(json.dumps(runs[-1]), flush=True)
    checkpoints = {p: [PROBLEMS[p].budget // 2, PROBLEMS[p].budget] for p in args.problems}
    summary = summarize(runs, checkpoints)
    for line in summary:
        print(json.dumps(line), flush=True)
    if args.output:
        with open(args.output, "w") as f:
            f.write(markdown(summary, args.algorithms, args))


if __name__ == "__main__":
    main()
