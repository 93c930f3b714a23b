"""Multi-objective benchmark: hypervolume on ZDT1, ZDT2 and DTLZ2 against Optuna.

daskhpo's side runs through the engine (:meth:`daskhpo.Experiment.run`) on the in-process
:class:`~daskhpo.engine.FakeExecutor` (virtual time, no Dask, no sleeping), with ``objectives=``
as a user writes them.  Optuna 5.0's ``NSGAIISampler`` and ``TPESampler`` (its
multi-objective TPE) run through ask/tell.  With 8 trials in flight both sides keep eight
trials running; each trial lasts a virtual time that depends only on its parameters (0.5 to
1.5 s), and the trial that finishes first is told first, so results arrive out of order as on
a cluster.

For each problem, algorithm, trials in flight and seed it records the hypervolume of the
first 100 and 300 finished trials (exact, :func:`daskhpo.pareto.hypervolume`) and reports
the median over seeds and the median gap to the true front's hypervolume (lower is better).
Reference points: ZDT1/ZDT2 (30 variables) ``(1.1, 11)``, which bounds every point of the
search space (f1 <= 1, f2 <= 10); DTLZ2 (12 variables, 3 objectives) ``(3.6, 3.6, 3.6)``
(every f_i <= 3.5).  The true fronts' hypervolumes are analytic: 1.1 * 11 - 1/3 (ZDT1),
1.1 * 11 - 2/3 (ZDT2) and 3.6^3 - pi/6 (DTLZ2).

Prints one JSON object per line and writes ``benchmarks/results/multiobjective.md``.

Usage::

    nice -n 10 python benchmarks/multiobjective.py                      # 10 seeds (slow)
    python benchmarks/multiobjective.py --seeds 2 --problems zdt1 --algorithms evolution optuna-nsga2
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import heapq
import json
import logging
import math
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import Pool
from typing import Any

import numpy as np

import daskhpo
from daskhpo.engine import FakeExecutor
from daskhpo.pareto import hypervolume

DASKHPO = ["random", "sobol", "evolution", "parego", "motpe", "auto"]
PEERS = ["optuna-nsga2", "optuna-tpe"]
BUDGETS = (100, 300)


@dataclass(frozen=True)
class Problem:
    name: str
    n_vars: int
    n_obj: int
    fn: Callable[[np.ndarray], np.ndarray]
    reference: tuple[float, ...]
    optimum: float  # hypervolume of the true Pareto front within the reference point


def zdt1(x: np.ndarray) -> np.ndarray:
    g = 1 + 9 * x[1:].mean()
    return np.array([x[0], g * (1 - math.sqrt(x[0] / g))])


def zdt2(x: np.ndarray) -> np.ndarray:
    g = 1 + 9 * x[1:].mean()
    return np.array([x[0], g * (1 - (x[0] / g) ** 2)])


def dtlz2(x: np.ndarray, m: int = 3) -> np.ndarray:
    g = float(np.sum((x[m - 1 :] - 0.5) ** 2))
    angles = x[: m - 1] * math.pi / 2
    f = np.full(m, 1 + g)
    for i in range(m):
        f[i] *= np.prod(np.cos(angles[: m - 1 - i]))
        if i > 0:
            f[i] *= math.sin(angles[m - 1 - i])
    return f


PROBLEMS = {
    "zdt1": Problem("zdt1", 30, 2, zdt1, (1.1, 11.0), 1.1 * 11 - 1 / 3),
    "zdt2": Problem("zdt2", 30, 2, zdt2, (1.1, 11.0), 1.1 * 11 - 2 / 3),
    "dtlz2": Problem("dtlz2", 12, 3, dtlz2, (3.6, 3.6, 3.6), 3.6**3 - math.pi / 6),
}


def names(problem: Problem) -> list[str]:
    return [f"f{i + 1}" for i in range(problem.n_obj)]


def duration(x: np.ndarray) -> float:
    """Virtual seconds a trial runs: 0.5 to 1.5, a function of its parameters only."""
    return 0.5 + float(np.modf(np.sum(x) * 7919.0)[0])


class Objective:
    """The problem as a daskhpo objective (keyword parameters x0, x1, ...; a dict of f1, f2, ...)."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem

    def vector(self, params: dict) -> np.ndarray:
        return np.array([params[f"x{i}"] for i in range(self.problem.n_vars)])

    def __call__(self, **params: float) -> dict[str, float]:
        return dict(zip(names(self.problem), map(float, self.problem.fn(self.vector(params)))))


def hv_at(values: np.ndarray, problem: Problem) -> dict[int, float]:
    """Hypervolume of the first n finished trials, for each budget n."""
    return {n: hypervolume(values[:n], problem.reference) for n in BUDGETS}


def run_daskhpo(problem: Problem, algorithm: str, seed: int, in_flight: int) -> np.ndarray:
    space = {f"x{i}": "uniform(0, 1)" for i in range(problem.n_vars)}
    objective = Objective(problem)
    exp = daskhpo.build_experiment(
        f"{problem.name}-{algorithm}", space, algorithm=algorithm, seed=seed,
        objectives=dict.fromkeys(names(problem), "minimize"),
    )
    executor = FakeExecutor(objective, slots=in_flight, duration=lambda p: duration(objective.vector(p)))
    exp.run(executor, max(BUDGETS))
    records = sorted((r for r in exp.records() if r.ok), key=lambda r: r.seq)  # in the order they finished
    return np.array([r.values for r in records])


def run_optuna(problem: Problem, algorithm: str, seed: int, in_flight: int) -> np.ndarray:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    sampler = (optuna.samplers.NSGAIISampler(seed=seed) if algorithm == "optuna-nsga2"
               else optuna.samplers.TPESampler(seed=seed))
    study = optuna.create_study(directions=["minimize"] * problem.n_obj, sampler=sampler)
    running: list[tuple[float, int, Any, np.ndarray]] = []  # (end time, number, trial, x)
    now, out, asked = 0.0, [], 0
    while len(out) < max(BUDGETS):
        while len(running) < in_flight and asked < max(BUDGETS):
            trial = study.ask()
            x = np.array([trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(problem.n_vars)])
            heapq.heappush(running, (now + duration(x), trial.number, trial, x))
            asked += 1
        now, _, trial, x = heapq.heappop(running)  # the first to finish is told first
        values = problem.fn(x)
        study.tell(trial, list(map(float, values)))
        out.append(values)
    return np.array(out)


def one(job: tuple[str, str, int, int]) -> dict[str, Any]:
    problem_name, algorithm, seed, in_flight = job
    problem = PROBLEMS[problem_name]
    start = time.perf_counter()
    run = run_optuna if algorithm in PEERS else run_daskhpo
    values = run(problem, algorithm, seed, in_flight)
    hv = hv_at(values, problem)
    return {"problem": problem_name, "algorithm": algorithm, "seed": seed, "in_flight": in_flight,
            **{f"hv_{n}": hv[n] for n in BUDGETS}, "seconds": round(time.perf_counter() - start, 2)}


def summarize(rows: list[dict], problems: list[str], algorithms: list[str], flights: list[int]) -> list[dict]:
    out = []
    for problem in problems:
        optimum = PROBLEMS[problem].optimum
        for in_flight in flights:
            for algorithm in algorithms:
                runs = [r for r in rows if (r["problem"], r["algorithm"], r["in_flight"]) == (problem, algorithm, in_flight)]
                if not runs:
                    continue
                entry = {"summary": True, "problem": problem, "algorithm": algorithm, "in_flight": in_flight,
                         "seeds": len(runs), "seconds_per_run": round(statistics.median(r["seconds"] for r in runs), 2)}
                for n in BUDGETS:
                    hv = [r[f"hv_{n}"] for r in runs]
                    entry[f"hv_{n}"] = round(statistics.median(hv), 4)
                    entry[f"gap_{n}"] = round(statistics.median(optimum - h for h in hv), 4)
                    q = np.percentile([optimum - h for h in hv], [25, 75])
                    entry[f"gap_{n}_iqr"] = [round(float(q[0]), 4), round(float(q[1]), 4)]
                out.append(entry)
    return out


def write_markdown(summary: list[dict], path: str, seeds: int) -> None:
    lines = [
        "# Multi-objective benchmark",
        "",
        f"`benchmarks/multiobjective.py`, up to {seeds} seeds. Hypervolume gap to the true Pareto front "
        "(median over seeds, lower is better; interquartile range in brackets) after the first 100 and "
        "300 finished trials. Reference points: ZDT1/ZDT2 (1.1, 11), DTLZ2 (3.6, 3.6, 3.6). daskhpo runs "
        "through the engine on the fake executor (virtual time); Optuna 5.0 through ask/tell, 8 in flight "
        "kept by the same virtual clock.",
        "",
        "| problem | in flight | algorithm | seeds | gap @100 | gap @300 | HV @300 | s/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in summary:
        lines.append(
            f"| {e['problem']} | {e['in_flight']} | {e['algorithm']} | {e['seeds']} | {e['gap_100']:.3f} "
            f"[{e['gap_100_iqr'][0]:.2f}, {e['gap_100_iqr'][1]:.2f}] | {e['gap_300']:.3f} "
            f"[{e['gap_300_iqr'][0]:.2f}, {e['gap_300_iqr'][1]:.2f}] | {e['hv_300']:.3f} | {e['seconds_per_run']} |"
        )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    parser.add_argument("--algorithms", nargs="+", default=DASKHPO + PEERS, choices=DASKHPO + PEERS)
    parser.add_argument("--in-flight", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results", "multiobjective.md"))
    parser.add_argument("--no-write", action="store_true", help="print JSON only")
    parser.add_argument("--from-rows", help="summarize the per-run JSON lines of an earlier run instead of running")
    args = parser.parse_args()
    logging.getLogger("daskhpo").setLevel(logging.WARNING)
    rows = []
    if args.from_rows:
        with open(args.from_rows) as fh:
            rows = [row for row in map(json.loads, filter(str.strip, fh)) if "summary" not in row]
    else:
        jobs = [(p, a, s, k) for p in args.problems for k in args.in_flight for a in args.algorithms
                for s in range(args.seeds)]
        with Pool(args.jobs) as pool:
            for row in pool.imap_unordered(one, jobs):
                print(json.dumps(row), flush=True)
                rows.append(row)
    summary = summarize(rows, args.problems, args.algorithms, args.in_flight)
    for entry in summary:
        print(json.dumps(entry), flush=True)
    if not args.no_write:
        write_markdown(summary, args.output, max((e["seeds"] for e in summary), default=0))


if __name__ == "__main__":
    main()
