"""Racing benchmarks: quality at a fixed budget of instance evaluations, and decision latency.

Run ``python benchmarks/racing.py`` (``--parts quality,latency``, ``--seeds N``,
``--budgets 300,1000``, ``--quick`` for a smoke run).  Prints one JSON object per result.

Parts
-----
quality
    A noisy objective with a known truth: Hartmann-3 (minimum -3.8628), observed on 10
    instances, each adding its own difficulty (an offset shared by every configuration)
    and seeded noise (normal, ``--noise``, per configuration and instance).  The objective
    reports each instance's score (``daskhpo.report(step=instance, ...)``) and returns
    their mean.  At the same budget of instance evaluations, methods: every configuration
    on all 10 instances (``full-random``, ``full-tpe``), and races (``race-random``,
    ``race-tpe``, ``race-tpe-wait``: reports that wait for their decision;
    ``race-tpe-untold``: the sampler learns nothing of pruned configurations, to measure
    what telling it their estimated means is worth; ``race-tpe-keep``: completed
    configurations shown worse are not eliminated from later blocks).  Metric: the
    true (noise-free) value of the configuration each method would return (the best
    completed mean when the budget is spent), as regret above the minimum; 10 seeds.  Runs
    through the engine on the in-process :class:`~daskhpo.engine.FakeExecutor` (virtual
    time, 4 trials in flight, one virtual second per instance), to spare the CPUs: a
    prune takes effect at the next report, as asynchronous decisions do when a step is
    longer than the decision latency (see the latency part), or at the report itself
    with ``wait_decisions`` (``report(wait=True)``).
latency
    On a LocalCluster of 2 worker processes: (1) the round trip of ``report(wait=True)``
    (report → engine → optimizer on the model thread → answer on the worker), with an
    optimizer that always continues and with the race; (2) how long an asynchronous
    prune takes to reach the objective (reports every 0.2 ms); (3) for step lengths from 0
    to 30 ms, a trial of 10 steps that the search prunes at step 3: steps actually run and
    time spent, asynchronously and with ``wait=True``, against running all 10 steps.  Steps
    either sleep (native code that releases the GIL, as numpy or a GPU kernel do) or spin in
    Python (holding the GIL, which the worker's communication thread then waits for).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import daskhpo  # noqa: E402
from daskhpo.engine import FakeExecutor  # noqa: E402
from daskhpo.optimizers import CONTINUE, PRUNE, Optimizer, make_optimizer  # noqa: E402
from daskhpo.optimizers.race import Race  # noqa: E402

INSTANCES = 10
SLOTS = 4
HARTMANN_MIN = -3.86278
_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_A = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
_P = 1e-4 * np.array([[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]])
SPACE = {"x1": "uniform(0, 1)", "x2": "uniform(0, 1)", "x3": "uniform(0, 1)"}


def emit(**result) -> dict:
    print(json.dumps(result, default=float), flush=True)
    return result


# -- quality -----------------------------------------------------------------------------------


def hartmann3(x1: float, x2: float, x3: float) -> float:
    """The noise-free value (minimum -3.86278 at (0.1146, 0.5556, 0.8525))."""
    x = np.array([x1, x2, x3])
    return float(-np.sum(_ALPHA * np.exp(-np.sum(_A * (x - _P) ** 2, axis=1))))


def noisy_hartmann(x1, x2, x3, seed=0, noise=1.0, instances=INSTANCES):
    """Report one noisy score per instance; return their mean (the race's notion of best)."""
    true = hartmann3(x1, x2, x3)
    config = zlib.crc32(np.array([x1, x2, x3]).tobytes())
    scores = []
    for i in range(1, instances + 1):
        difficulty = np.random.default_rng([seed, i]).normal(0, 0.5)  # the same for every configuration
        scores.append(true + difficulty + noise * np.random.default_rng([seed, i, config]).normal())
        daskhpo.report(i, objective=scores[-1])
    return float(np.mean(scores))


class RaceUntold(Race):
    """The race, but the sampler is told pruned configurations as pruned (TPE ignores them)
    instead of an estimate of their mean: what the estimates are worth."""

    def _for_sampler(self, trial):
        return trial if trial.status == "pruned" else super()._for_sampler(trial)


class RaceKeeping(Race):
    """The race, but completed configurations shown worse stay in later blocks (an ablation
    of eliminating them: larger blocks, more power to the Friedman test)."""

    def _eliminate(self, trial_ids):
        pass


RACE = {"instances": INSTANCES, "first_test": 5}
#: method -> (algorithm, or a function of the seed building it; reports wait for their decision)
METHODS = {
    "full-random": ("random", False),
    "full-tpe": ("tpe", False),
    "race-random": (("race", {"sampler": "random", **RACE}), False),
    "race-tpe": (("race", {"sampler": "tpe", **RACE}), False),
    "race-tpe-wait": (("race", {"sampler": "tpe", **RACE}), True),
    "race-tpe-untold": (lambda seed: RaceUntold(daskhpo.Space(SPACE), seed=seed, sampler="tpe", **RACE), False),
    "race-tpe-keep": (lambda seed: RaceKeeping(daskhpo.Space(SPACE), seed=seed, sampler="tpe", **RACE), False),
}


def at_budget(records, budget: int) -> dict:
    """What a method returns once ``budget`` instance evaluations are spent.

    Instance ``k`` of a trial is evaluated during virtual second ``started + k``; the
    method returns the completed trial with the best mean among those ended by then.
    """
    done = sorted(r.started + k for r in records for k in range(1, int(r.last_step) + 1)
                  if math.isfinite(r.last_step))
    if len(done) < budget:
        raise RuntimeError(f"the run spent {len(done)} instance evaluations, fewer than the budget {budget}")
    spent_at = done[budget - 1]
    finished = [r for r in records if r.ended <= spent_at + 1e-9]
    completed = [r for r in finished if r.status == "completed"]
    best = min(completed, key=lambda r: (r.objective, r.trial))
    true = hartmann3(**best.params)
    return {
        "regret": true - HARTMANN_MIN,
        "true": true,
        "observed": best.objective,
        "configurations": len(finished),
        "completed": len(completed),
        "pruned": sum(r.status == "pruned" for r in finished),
    }


def run_quality(method: str, seed: int, budget: int, noise: float) -> dict:
    algorithm, wait = METHODS[method]
    if callable(algorithm):
        algorithm = algorithm(seed)
    exp = daskhpo.build_experiment(f"{method}-{seed}", SPACE, algorithm=algorithm, seed=seed)
    first = 5 if method.startswith("race") else INSTANCES
    t0 = time.perf_counter()
    exp.run(FakeExecutor(noisy_hartmann, duration=INSTANCES + 1, slots=SLOTS, wait_decisions=wait,
                         fn_kwargs={"seed": seed, "noise": noise}),
            max_trials=budget // first + 3 * SLOTS)
    cpu = time.perf_counter() - t0
    return emit(part="quality", method=method, seed=seed, budget=budget, noise=noise, cpu_s=cpu,
                **at_budget(exp.records(), budget))


def bench_quality(seeds: list[int], budgets: list[int], noise: float, methods: list[str]) -> list[dict]:
    rows = []
    for budget in budgets:
        for method in methods:
            results = [run_quality(method, seed, budget, noise) for seed in seeds]
            regret = np.array([r["regret"] for r in results])
            rows.append(emit(
                part="quality-summary", method=method, budget=budget, noise=noise, seeds=len(seeds),
                mean_regret=float(regret.mean()), se_regret=float(regret.std(ddof=1) / math.sqrt(len(regret)))
                if len(regret) > 1 else math.nan,
                median_regret=float(np.median(regret)),
                mean_configurations=float(np.mean([r["configurations"] for r in results])),
                mean_completed=float(np.mean([r["completed"] for r in results])),
                mean_cpu_s=float(np.mean([r["cpu_s"] for r in results])),
            ))
    by = {(r["method"], r["budget"]): r["mean_regret"] for r in rows}
    for budget in budgets if "full-tpe" in methods and "race-tpe" in methods else ():
        emit(part="quality-ratio", budget=budget, noise=noise,
             race_tpe_over_full_tpe=by[("race-tpe", budget)] / by[("full-tpe", budget)],
             race_random_over_full_random=by.get(("race-random", budget), math.nan) / by.get(("full-random", budget), math.nan))
    return rows


# -- latency -----------------------------------------------------------------------------------


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def waiting_reports(x, n=200):
    """Time each report(wait=True): the round trip to the search's decision and back."""
    costs = []
    for step in range(1, n + 1):
        t0 = time.perf_counter()
        daskhpo.report(step, objective=x + step, wait=True)
        costs.append(time.perf_counter() - t0)
    costs = np.array(costs[1:]) * 1e3  # the first includes warming up
    return {"objective": x, "median_ms": float(np.median(costs)), "p90_ms": float(np.percentile(costs, 90)),
            "p99_ms": float(np.percentile(costs, 99))}


def _work(seconds: float, busy: bool) -> None:
    """A step: Python code holding the GIL (``busy``), or native code releasing it (a sleep)."""
    if busy:
        _busy(seconds)
    elif seconds > 0:
        time.sleep(seconds)


def until_pruned(x, period=0.0002, busy=False):
    """Report every ``period`` s; the search prunes at step 1: the time until TrialPruned."""
    step, first = 0, time.perf_counter()
    try:
        while step < 1_000_000:
            step += 1
            daskhpo.report(step, objective=x)
            if step == 1:
                first = time.perf_counter()
            _work(period, busy)
    except daskhpo.TrialPruned:
        return {"objective": x, "latency_ms": (time.perf_counter() - first) * 1e3}
    return {"objective": x, "latency_ms": math.inf}


def steps_of(x, step_s=0.001, steps=10, wait=False, busy=False):
    """10 steps of ``step_s`` each; the search prunes at step 3: steps run and time spent."""
    t0, ran = time.perf_counter(), 0
    try:
        for step in range(1, steps + 1):
            _work(step_s, busy)
            ran += 1
            daskhpo.report(step, objective=x, wait=wait)
    except daskhpo.TrialPruned:
        pass
    return {"objective": x, "ran": float(ran), "elapsed_ms": (time.perf_counter() - t0) * 1e3}


class Always(Optimizer):
    """Random configurations; continues every report, or prunes at ``prune_at``."""

    name = "always"

    def __init__(self, space, seed=None, prune_at=math.inf):
        super().__init__(space, seed)
        self.prune_at = prune_at

    def ask(self, trial_id):
        return daskhpo.Suggestion(self.space.sample(self.rng_for(trial_id)))

    def tell(self, trial):
        pass

    def report(self, report):
        return PRUNE if report.step >= self.prune_at else CONTINUE


def _history(client, fn, optimizer, trials, **kwargs):
    space = {"x": "uniform(0, 1)"}
    exp = daskhpo.build_experiment("latency", space, algorithm=optimizer(daskhpo.Space(space)), seed=0)
    exp.workon(fn, max_trials=trials, client=client, **kwargs)
    return exp.history


def bench_latency(quick: bool) -> None:
    import os

    from distributed import Client, LocalCluster

    trials = 2 if quick else 8
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        for name, opt in (("always continue", lambda s: Always(s, seed=0)),
                          ("race (its tests included)", lambda s: make_optimizer(
                              ("race", {"sampler": "random", "instances": 10**6, "first_test": 5}), s, 0))):
            ds = _history(client, waiting_reports, opt, trials, n=50 if quick else 200)
            emit(part="latency", what=f"report(wait=True) round trip, {name}", trials=len(ds.trial),
                 statuses=ds.status.to_series().value_counts().to_dict(),
                 median_ms=float(np.nanmedian(ds.median_ms.values)), p90_ms=float(np.nanmedian(ds.p90_ms.values)),
                 p99_ms=float(np.nanmedian(ds.p99_ms.values)), loadavg=os.getloadavg()[0])
        for busy in (False, True):
            ds = _history(client, until_pruned, lambda s: Always(s, seed=0, prune_at=1), trials, busy=busy)
            emit(part="latency", what="asynchronous prune: report to TrialPruned, reports every 0.2 ms "
                 + ("of Python code holding the GIL" if busy else "of native code (a sleep)"),
                 trials=len(ds.trial), median_ms=float(np.median(ds.latency_ms.values)),
                 p90_ms=float(np.percentile(ds.latency_ms.values, 90)), loadavg=os.getloadavg()[0])
        for busy in (False, True):
            for step_ms in (0, 0.1, 0.3, 1, 3, 10, 30):
                row = {}
                for mode in ("async", "wait"):
                    ds = _history(client, steps_of, lambda s: Always(s, seed=0, prune_at=3), trials,
                                  step_s=step_ms / 1e3, wait=mode == "wait", busy=busy)
                    row[f"{mode}_steps_run"] = float(np.mean(ds.ran.values))
                    row[f"{mode}_ms"] = float(np.median(ds.elapsed_ms.values))
                emit(part="step-length", step_ms=step_ms, gil="held" if busy else "released", **row,
                     unpruned_ms=10 * step_ms, loadavg=os.getloadavg()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="quality,latency")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budgets", default="300,1000")
    parser.add_argument("--noises", default="1.0,0.3", help="noise levels (standard deviation per instance)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"of {list(METHODS)}")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    parts = set(args.parts.split(","))
    if "quality" in parts:
        seeds = list(range(2 if args.quick else args.seeds))
        for noise in (float(n) for n in args.noises.split(",")):
            bench_quality(seeds, [int(b) for b in args.budgets.split(",")], noise, args.methods.split(","))
    if "latency" in parts:
        bench_latency(args.quick)


if __name__ == "__main__":
    # Run as the importable module "racing" (this directory is on sys.path, which worker
    # processes inherit), so that objectives are pickled by reference.
    import racing

    racing.main()
