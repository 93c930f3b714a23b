"""Synthetic trial records for the plot and dashboard tests (no cluster needed)."""

from __future__ import annotations

import json
import math

import numpy as np

from daskhpo import Space
from daskhpo.experiment import Experiment
from daskhpo.records import TrialRecord
from daskhpo.store.history import History

SPACE = {
    "lr": "loguniform(1e-4, 1)",
    "depth": "randint(1, 8)",
    "kind": "choices(['relu', None, 3])",
    "x": "uniform(-2, 2)",
}


def objective(params: dict) -> float:
    """Depends strongly on x, a little on lr, not at all on depth."""
    return (params["x"] - 0.5) ** 2 + 0.05 * (math.log10(params["lr"]) + 2) ** 2


def make_records(n: int, *, seed: int = 0, broken_every: int = 0, t0: float = 1.7e9, workers: int = 2) -> list[TrialRecord]:
    """``n`` finished trials on ``workers`` workers, one second each, back to back."""
    space = Space(SPACE)
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        params = space.sample(rng)
        broken = broken_every and i % broken_every == broken_every - 1
        slot = i % workers
        start = t0 + (i // workers) * 1.0
        records.append(TrialRecord(**{
            "trial": i,
            "params": params,
            "status": "broken" if broken else "completed",
            "objective": math.nan if broken else objective(params),
            "metrics": {} if broken else {"loss": objective(params) * 2},
            "submitted": start - 0.1,
            "started": start,
            "ended": start + 0.9,
            "worker": f"tcp://127.0.0.1:{4000 + slot}",
            "gpu": None,
            "attempts": 1,
            "error": "ValueError: boom" if broken else None,
        }))
    return records


def make_experiment(n: int, path=None, **kwargs) -> Experiment:
    """An experiment holding ``n`` synthetic trials (stored at ``path`` if given)."""
    space = Space(SPACE)
    attrs = {"name": "synthetic", "space": json.dumps(space.to_dict()), "algorithm": "random",
             "algorithm_config": "{}", "seed": 0, "daskhpo_version": "test"}
    history = History(space, attrs, path, make_records(n, **kwargs))
    return Experiment("synthetic", space, None, history)
