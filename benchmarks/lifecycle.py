"""Workers that come and go on schedule: compute lost to kills, and utilization, with and without
walltime-aware admission, soft lifetimes and checkpointed preemption (issue 21).

A simulated batch cluster in virtual time
(:class:`daskhpo.engine.fake_lifetimes.FakeLifetimeExecutor` driven by the production
:class:`~daskhpo.engine.loop.Engine` and its state machine): ``--workers`` workers
(1,000), each inside a job of ``--walltime`` hours (4 h) whose starts are staggered (at
the start each initial worker has a uniform share of its walltime left), preempted at
``--preempt-rate`` per worker-hour (5 %: an exponential time to preemption from each
job's start), and replaced ``--replace`` seconds after it leaves (an adaptive cluster
resubmitting a job).  Trials run ``--min-minutes`` to ``--max-minutes`` (20-90 min,
uniform) and report a checkpoint every ``--report-minutes`` (5 min); a resumed attempt
runs only the steps after its checkpoint.  The run lasts ``--hours`` of virtual time,
then stops (trials in flight are cancelled, their time counted busy, not lost).

*with*: the executor sends the workers' ends, the engine admits a trial only where it is
expected to fit (run time learned from completed trials), retires workers too near their
end once idle (soft lifetime), and at a worker's signal (``--grace`` seconds before its
end: Slurm's ``--signal``, the SIGTERM before a preemption's kill) the trials running
there checkpoint at their next report and resume elsewhere.  *without*: today's
behaviour, the worker dies at its end with its trials, which start again from zero.

Measured (all in worker-seconds):

- *busy*: attempts running; *lost*: the run time of attempts killed with their worker
  (thrown away: the next attempt starts again from the same point); preempted attempts
  lose nothing (they stop at a checkpoint).
- ``lost_fraction`` = lost / busy; ``utilization`` = (busy - lost) / connected, where
  *connected* is the worker-seconds of every worker connected during the run (a worker
  retired early stops counting: its allocation is given back);
  ``useful_per_worker_hour`` = (busy - lost) / (workers x hours), the same work per
  worker-hour of the cluster's *size*.

``--mix fidelity``: a multi-fidelity search instead (ASHA's mix, ``eta`` = 3: 27 trials
at fidelity 1 for 9 at 3, 3 at 9 and 1 at 27), each ``--unit-minutes`` (4) per unit of
fidelity, give or take 20 %; mode *single* is *with* but with one expected run time for
all trials (``Lifetimes(per_fidelity=False)``), *with* learns it per fidelity.

    python benchmarks/lifecycle.py                 # 1,000 workers, 6 h, both modes
    python benchmarks/lifecycle.py --workers 200 --hours 4
    python benchmarks/lifecycle.py --mix fidelity --modes without single with
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daskhpo import load_checkpoint, report  # noqa: E402
from daskhpo.engine.fake_lifetimes import FakeLifetimeExecutor  # noqa: E402
from daskhpo.engine.lifetimes import Lifetimes  # noqa: E402
from daskhpo.engine.loop import Engine  # noqa: E402
from daskhpo.engine.state import Planned  # noqa: E402


def objective(minutes: float, steps: int, fidelity: int = 0) -> float:
    """``steps`` steps from the checkpoint it starts from, each reported with a checkpoint."""
    for step in range((load_checkpoint() or 0) + 1, steps + 1):
        report(step, 1.0 / step, checkpoint=step)
    return minutes


def trial_minutes(rng: np.random.Generator, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray | None]:
    """Each trial's minutes, and its fidelity (``None``: ``--mix uniform``, no fidelity)."""
    n = args.workers * 50
    if args.mix == "uniform":
        return rng.uniform(args.min_minutes, args.max_minutes, size=n), None
    fidelity = rng.choice([1, 3, 9, 27], size=n, p=np.array([27, 9, 3, 1]) / 40)
    return fidelity * args.unit_minutes * rng.uniform(0.8, 1.2, size=n), fidelity


def simulate(mode: str, args: argparse.Namespace) -> dict:
    aware = mode != "without"
    rng = np.random.default_rng(args.seed)  # the same cluster and trials for both modes
    walltime = args.walltime * 3600.0
    rate = args.preempt_rate / 3600.0
    initial = {f"fake-worker-{i}" for i in range(args.workers)}

    def lifetime(worker: str) -> float:
        # staggered: an initial worker started some time ago; a replacement has its whole walltime
        return float(rng.uniform(0.0, walltime)) if worker in initial else walltime

    def preempt(worker: str) -> float | None:
        return float(rng.exponential(1.0 / rate)) if rate > 0 else None

    step_s = args.report_minutes * 60.0

    def duration(params: dict, checkpoint: int | None) -> float:
        # the attempt's length: what is left after its checkpoint (the last step has its remainder)
        total = params["minutes"] * 60.0
        return total * (params["steps"] - (checkpoint or 0)) / params["steps"]

    trials, fidelities = trial_minutes(rng, args)
    plans = iter(Planned(i, {"minutes": float(m), "steps": max(1, round(m * 60.0 / step_s)),
                             **({} if fidelities is None else {"fidelity": int(fidelities[i])})})
                 for i, m in enumerate(trials))
    executor = FakeLifetimeExecutor(objective, workers=args.workers, lifetime=lifetime, preempt=preempt,
                                    grace=args.grace, replace=args.replace, aware=aware, duration=duration)
    records = []
    engine = Engine(executor, retries=1000, timeout=args.hours * 3600.0, timeout_grace=0.0,
                    max_preemptions=1000, quarantine_after=None, lifetimes=Lifetimes(per_fidelity=mode != "single"),
                    fidelity=None if fidelities is None else "fidelity")
    t0 = time.perf_counter()
    engine.run(lambda: next(plans, None), lambda r, c: records.append(r))
    real = time.perf_counter() - t0
    busy, lost = executor.busy_seconds, executor.lost_seconds
    connected = executor.connected_seconds()
    horizon = args.hours * 3600.0
    return {
        "mode": mode,
        "mix": args.mix,
        "workers": args.workers,
        "hours": args.hours,
        "trials_completed": sum(r.status == "completed" for r in records),
        "attempts_killed": executor.killed,
        "killed_at_walltime": executor.killed_at_walltime,
        "attempts_preempted": executor.preempted,
        "workers_retired": len(executor.retired),
        "lost_fraction": round(lost / busy, 4) if busy else math.nan,
        "utilization": round((busy - lost) / connected, 4) if connected else math.nan,
        "busy_fraction": round(busy / connected, 4) if connected else math.nan,
        "useful_per_worker_hour": round((busy - lost) / (args.workers * horizon), 4),
        "connected_worker_hours": round(connected / 3600.0, 1),
        "real_seconds": round(real, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--walltime", type=float, default=4.0, help="hours")
    parser.add_argument("--preempt-rate", type=float, default=0.05, help="per worker-hour")
    parser.add_argument("--hours", type=float, default=6.0, help="virtual hours simulated")
    parser.add_argument("--min-minutes", type=float, default=20.0)
    parser.add_argument("--max-minutes", type=float, default=90.0)
    parser.add_argument("--report-minutes", type=float, default=5.0)
    parser.add_argument("--grace", type=float, default=60.0, help="seconds from the signal to the kill")
    parser.add_argument("--replace", type=float, default=120.0, help="seconds until a replacement joins")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mix", default="uniform", choices=["uniform", "fidelity"])
    parser.add_argument("--unit-minutes", type=float, default=4.0, help="per unit of fidelity (--mix fidelity)")
    parser.add_argument("--modes", nargs="+", default=["without", "with"], choices=["without", "single", "with"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the lost-trial warnings are the point, not news
    for mode in args.modes:
        print(json.dumps(simulate(mode, args)), flush=True)


if __name__ == "__main__":
    main()
