"""Slot utilization: how busy the loop keeps its slots, per algorithm, real and simulated.

utilization = sum of the trials' run times / (slots x wall time)

measured from the start of the run to the moment the last trial was submitted (after
that, slots idle because the budget is spent, not because the loop is slow; the figure
with the tail is printed too, as ``utilization_with_tail``).

**Real mode** (``--mode real``): an in-process Dask cluster (one worker, ``slots``
threads; ``workon``'s default trials in flight, so one in ten is queued on the worker); each trial sleeps ``duration`` seconds +- 50 % (drawn from its parameters) on an
8-dimensional mixed space.  The wall time runs from the call of ``Experiment.workon`` to its
return, so the tail (the last wave draining) counts as idle time: use several waves
(``--waves``) for steady-state numbers.

**Simulated mode** (``--mode sim``): :class:`~daskhpo.engine.simulate.ModelClockExecutor`,
the fake executor in virtual time (no Dask, no sleeping) for thousands of slots, whose
clock is charged with real work: every real second the loop spends between two calls into
the executor (recording, telling, waiting for a suggestion) moves the clock on by that
second; and while the model thread works on a batch, virtual time passes at the speed of
real time (results due meanwhile are delivered and recorded, the freed slots wait for the
batch).  A slow model therefore shows up as slots idling in virtual time, as it would on
a cluster where the model is the bottleneck.  ``--loop-suggests`` runs without the model
thread (the loop suggests, charged), as the engine did before.  With
``--max-seconds`` a run stops submitting after that much real time, and utilization is
measured over the virtual window up to that point (no tail), so slow baselines stay
measurable.

Each result is one JSON line: utilization, suggestions per second (trials submitted per
second of wall or virtual time), ask latency (median and p99, ms), tell latency, and for
the simulation the charged real seconds.

    python benchmarks/utilization.py --mode real                         # 64 slots x 1 s
    python benchmarks/utilization.py --mode real --slots 256 --duration 10 --waves 10
    python benchmarks/utilization.py --mode sim --slots 1000 --trials 10000
    python benchmarks/utilization.py --mode short --trials 2000 --packs 1 4 16 64   # trials/s

**Short mode** (``--mode short``): trials/s of a trivial objective, a bare Dask
``as_completed`` loop (``benchmarks/overhead.py``) against ``workon(trials_per_task=k)``,
on one in-process worker with ``--slots`` threads (default 2).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import logging
import math
import statistics
import sys
import time
import zlib
from pathlib import Path

import numpy as np

import daskhpo
from daskhpo.engine.simulate import ModelClockExecutor

ALGORITHMS = ["random", "tpe", "gp", "evolution", "asha", "pbt"]
SPACE = {
    "x0": "uniform(-5, 5)",
    "x1": "uniform(-5, 5)",
    "x2": "uniform(-5, 5)",
    "lr": "loguniform(1e-5, 1)",
    "n": "randint(1, 64)",
    "depth": "randint(1, 10)",
    "act": "choices(['relu', 'tanh', 'gelu'])",
    "opt": "choices(['sgd', 'adam'])",
}
RESULTS = Path(__file__).parent / "results"


def value(params: dict) -> float:
    x = np.array([params["x0"], params["x1"], params["x2"]])
    return float((x**2).sum() + abs(math.log10(params["lr"]) + 3) + (params["n"] - 32) ** 2 / 100
                 + params["depth"] / 10 + (params["act"] != "gelu") + (params["opt"] != "adam"))


def jitter(params: dict) -> float:
    """A factor in [0.5, 1.5), a function of the parameters only."""
    return 0.5 + zlib.crc32(repr(sorted(params.items())).encode()) / 2**32


def sleeper(duration: float, steps: int = 0, **params) -> float:
    """Sleep ``duration`` +- 50 %; with ``steps``, report that many times along the way."""
    total = duration * jitter(params)
    v = value(params)
    for step in range(1, steps + 1):
        time.sleep(total / steps)
        daskhpo.report(step, v + 1.0 / step)
    time.sleep(total if steps == 0 else 0.0)
    return v


def algorithm_spec(name: str, slots: int):
    if name == "asha":
        return ("asha", {"min_resource": 1, "max_resource": 9, "reduction_factor": 3, "sampler": "tpe"})
    if name == "pbt":
        return ("pbt", {"population_size": slots})
    return name


def timed(fn, into: list):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            into.append(time.perf_counter() - t0)

    return wrapper


def latency(samples: list[float]) -> dict:
    if not samples:
        return {"median_ms": None, "p99_ms": None}
    return {"median_ms": round(1e3 * statistics.median(samples), 3),
            "p99_ms": round(1e3 * float(np.percentile(samples, 99)), 3)}


def instrument(exp, fills: list) -> tuple[list, list]:
    """Time each suggestion (an ask, or a batch's time shared by its suggestions), tell and fill."""
    asks: list[float] = []
    tells: list[float] = []
    opt = exp.optimizer
    ask, ask_batch = opt.ask, opt.ask_batch
    depth = [0]

    def timed_ask(trial_id):
        t0 = time.perf_counter()
        try:
            return ask(trial_id)
        finally:
            if not depth[0]:
                asks.append(time.perf_counter() - t0)

    def timed_batch(trial_ids):
        t0 = time.perf_counter()
        depth[0] += 1
        try:
            out = ask_batch(trial_ids)
        finally:
            depth[0] -= 1
        took = time.perf_counter() - t0
        asks.extend([took / max(len(out), 1)] * len(out))
        return out

    opt.ask, opt.ask_batch = timed_ask, timed_batch
    opt.tell = timed(opt.tell, tells)
    # the trials that ran a fill while the model was busy (fill_idle): len(fills)
    opt.fill = timed(opt.fill, fills)
    return asks, tells


def busy_time(records, until: float | None = None, origin: float = 0.0) -> float:
    total = 0.0
    for r in records:
        if not (math.isfinite(r.started) and math.isfinite(r.ended)):
            continue
        end = r.ended if until is None else min(r.ended, until)
        total += max(0.0, end - max(r.started, origin))
    return total


# -- real mode -------------------------------------------------------------------------------
def best(records) -> float:
    return round(min((r.objective for r in records if math.isfinite(r.objective)), default=math.nan), 4)


def run_real(algorithm: str, slots: int, duration: float, trials: int, client, seed: int,
             fill_idle: float = 0.25) -> dict:
    exp = daskhpo.build_experiment(f"util-{algorithm}", SPACE, algorithm=algorithm_spec(algorithm, slots), seed=seed)
    fills: list[float] = []
    asks, tells = instrument(exp, fills)
    steps = 9 if algorithm == "asha" else 0
    start = time.time()
    exp.workon(sleeper, max_trials=trials, client=client, duration=duration, steps=steps,
               fill_idle=fill_idle)
    wall = time.time() - start
    records = exp.records()
    last = max(r.started for r in records)
    return {
        "mode": "real", "algorithm": algorithm, "slots": slots, "duration_s": duration, "trials": len(records),
        "wall_s": round(wall, 2),
        "utilization": round(busy_time(records, until=last, origin=start) / (slots * (last - start)), 4),
        "utilization_with_tail": round(busy_time(records) / (slots * wall), 4),
        "suggestions_per_s": round(len(asks) / wall, 1), "ask": latency(asks), "tell": latency(tells),
        "pruned": sum(r.status == "pruned" for r in records), "fill_idle": fill_idle,
        "filled": len(fills), "best": best(records),
    }


# -- simulated mode --------------------------------------------------------------------------
def run_sim(algorithm: str, slots: int, duration: float, trials: int, seed: int, max_seconds: float | None,
            background: bool = True, fill_idle: float = 0.25) -> dict:
    exp = daskhpo.build_experiment(f"sim-{algorithm}", SPACE, algorithm=algorithm_spec(algorithm, slots), seed=seed)
    fills: list[float] = []
    asks, tells = instrument(exp, fills)
    executor = ModelClockExecutor(lambda **p: value(p), duration=lambda p: duration * jitter(p), slots=slots)
    if not background:
        executor.wake = None  # no model thread: the loop suggests, and its time is charged
    stopped_at: list[float] = []
    deadline = None if max_seconds is None else time.perf_counter() + max_seconds
    if deadline is not None:
        # stop submitting after max_seconds of real time; measure up to that virtual moment
        optimizer = exp.optimizer
        ask, ask_batch = optimizer.ask, optimizer.ask_batch

        def over() -> bool:
            if time.perf_counter() > deadline:
                if not stopped_at:
                    stopped_at.append(executor.now)
                return True
            return False

        optimizer.ask = lambda trial_id: None if over() else ask(trial_id)
        optimizer.ask_batch = lambda trial_ids: [] if over() else ask_batch(trial_ids)
    t0 = time.perf_counter()
    exp.run(executor, max_trials=trials, n_workers=slots, fill_idle=fill_idle)
    real = time.perf_counter() - t0
    records = exp.records()
    last = max(r.started for r in records)
    return {
        "mode": "sim", "algorithm": algorithm, "slots": slots, "duration_s": duration, "trials": len(records),
        "truncated": bool(stopped_at), "virtual_s": round(executor.now, 1), "real_s": round(real, 2),
        "charged_s": round(executor.charged, 2), "model_s": round(executor.model_seconds, 2),
        "suggest": "background" if background else "loop",
        "utilization": round(busy_time(records, until=last) / (slots * last), 4),
        "utilization_with_tail": round(busy_time(records) / (slots * executor.now), 4),
        "suggestions_per_s": round(len(asks) / last, 2), "ask": latency(asks), "tell": latency(tells),
        "fill_idle": fill_idle, "filled": len(fills), "best": best(records),
    }


# -- short trials (packing) ----------------------------------------------------------------
def run_short(trials: int, packs: list[int], threads: int) -> list[dict]:
    """Trials/s of a trivial objective: a bare Dask loop against daskhpo with k trials per task."""
    from distributed import Client, LocalCluster

    sys.path.insert(0, str(Path(__file__).parent))
    from overhead import bare_dask, noop

    out = []
    with LocalCluster(n_workers=1, threads_per_worker=threads, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        bare_dask(client, 100, threads)  # warm up
        t = bare_dask(client, trials, threads)["seconds"]
        base = trials / t
        out.append({"mode": "short", "loop": "bare_dask", "in_flight": threads, "trials": trials,
                    "trials_per_s": round(base, 1)})
        for k in packs:
            exp = daskhpo.build_experiment(f"short-{k}", {"x": "uniform(-5, 5)"}, seed=0)
            t0 = time.perf_counter()
            exp.workon(noop, max_trials=trials, client=client, trials_per_task=k)
            rate = trials / (time.perf_counter() - t0)
            out.append({"mode": "short", "loop": "daskhpo", "trials_per_task": k, "in_flight": threads * k,
                        "trials": trials, "trials_per_s": round(rate, 1), "ratio_to_bare_dask": round(rate / base, 3)})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["real", "sim", "short"], default="real")
    parser.add_argument("--packs", type=int, nargs="+", default=[1, 4, 16, 64], help="short mode: trials per task")
    parser.add_argument("--algorithms", nargs="+", choices=ALGORITHMS, default=ALGORITHMS)
    parser.add_argument("--slots", type=int, nargs="+", default=None, help="default: 64 (real), 1000 (sim)")
    parser.add_argument("--duration", type=float, default=None, help="trial seconds; default 1 (real), 60 (sim)")
    parser.add_argument("--waves", type=float, default=5, help="real mode: trials = waves x slots")
    parser.add_argument("--trials", type=int, default=None, help="sim mode: trials (default 3000; the goal uses 10000)")
    parser.add_argument("--max-seconds", type=float, default=None, help="sim mode: stop submitting after this real time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loop-suggests", action="store_true",
                        help="sim mode: no model thread, the loop suggests (as before this change)")
    parser.add_argument("--fill-idle", type=float, default=0.25,
                        help="workon's fill_idle: most share of trials drawn from the prior while the model is busy")
    parser.add_argument("--label", default="", help="stored with each result (e.g. baseline)")
    parser.add_argument("--output", default=str(RESULTS / "utilization.jsonl"))
    args = parser.parse_args(argv)
    logging.getLogger("distributed").setLevel(logging.ERROR)
    logging.getLogger("daskhpo").setLevel(logging.WARNING)
    out = open(args.output, "a") if args.output else None

    def emit(result: dict) -> None:
        result["label"] = args.label
        line = json.dumps(result)
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()

    if args.mode == "short":
        for result in run_short(args.trials or 2000, args.packs, (args.slots or [2])[0]):
            emit(result)
    elif args.mode == "real":
        from distributed import Client, LocalCluster

        duration = args.duration or 1.0
        for slots in args.slots or [64]:
            with LocalCluster(n_workers=1, threads_per_worker=slots, processes=False, dashboard_address=":0") as cluster, \
                    Client(cluster) as client:
                for algorithm in args.algorithms:
                    emit(run_real(algorithm, slots, duration, int(args.waves * slots), client, args.seed,
                                  args.fill_idle))
    else:
        duration = args.duration or 60.0
        for slots in args.slots or [1000]:
            for algorithm in args.algorithms:
                emit(run_sim(algorithm, slots, duration, args.trials or 3000, args.seed, args.max_seconds,
                             background=not args.loop_suggests, fill_idle=args.fill_idle))
    if out:
        out.close()


if __name__ == "__main__":
    sys.exit(main())
