"""Cheap objectives and drivers shared by the algorithm tests."""

from __future__ import annotations

import math

import numpy as np

from daskhpo.optimizers import Trial, make_optimizer
from daskhpo.space import Space

BRANIN_SPACE = Space({"x1": "uniform(-5, 10)", "x2": "uniform(0, 15)"})
BRANIN_MIN = 0.397887357729738


def branin(p: dict) -> float:
    x1, x2 = p["x1"], p["x2"]
    b, c = 5.1 / (4 * math.pi**2), 5 / math.pi
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10


def best_regret(algorithm, space: Space, fn, n_trials: int, seed: int, optimum: float = 0.0) -> float:
    """Run ``n_trials`` sequential trials and return the best value found minus ``optimum``."""
    opt = make_optimizer(algorithm, space, seed)
    best = math.inf
    for trial_id in range(n_trials):
        params = opt.ask(trial_id).params
        value = fn(params)
        best = min(best, value)
        opt.tell(Trial(trial_id, params, "completed", value))
    return best - optimum


def tell_random(opt, space: Space, fn, n: int, seed: int = 0) -> None:
    """Tell ``opt`` ``n`` completed random trials (ids 0..n-1)."""
    rng = np.random.default_rng(seed)
    for trial_id in range(n):
        params = space.sample(rng)
        opt.tell(Trial(trial_id, params, "completed", fn(params)))


def min_pairwise_distance(space: Space, configs: list[dict]) -> float:
    """Smallest distance between two configurations in the unit cube."""
    points = np.array([space.to_unit(c) for c in configs])
    d = np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1))
    return float(d[np.triu_indices(len(points), 1)].min())


def ask_batch(opt, n: int, start: int) -> list[dict]:
    """``n`` suggestions in a row, none told back (``n`` trials in flight)."""
    return [opt.ask(start + i).params for i in range(n)]
