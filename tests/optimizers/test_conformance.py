"""The protocol every registered algorithm must honour.

Every name in :func:`daskhpo.optimizers.available` runs through these tests; an algorithm
needing options for them (or declaring that it is deterministic) says so in ``CONFIG``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from daskhpo.optimizers import CONTINUE, PRUNE, Report, Suggestion, Trial, available, make_optimizer
from daskhpo.space import Space

# Options per algorithm for these tests, and algorithms whose suggestions ignore the seed.
CONFIG: dict[str, dict] = {"grid": {"n_values": 4}, "pbt": {"perturbation_interval": 2}}
SEED_INDEPENDENT = {"grid"}

MIXED = Space(
    {
        "x": "uniform(-5, 5)",
        "lr": "loguniform(1e-5, 1)",
        "units": "randint(1, 64)",
        "depth": "loguniform(1, 100, discrete=True)",
        "kernel": "choices(['rbf', 'linear', 'poly'])",
        "weight": "choices([None, 'balanced'])",
        "noise": "normal(0, 1)",
    }
)


def objective(params: dict) -> float:
    """A deterministic function of every dimension, with a known best region."""
    value = (params["x"] - 1) ** 2 + (math.log10(params["lr"]) + 3) ** 2
    value += (params["units"] - 40) ** 2 / 100 + abs(math.log(params["depth"]) - 2)
    value += {"rbf": 0.0, "linear": 1.0, "poly": 2.0}[params["kernel"]]
    value += 0.5 if params["weight"] is None else 0.0
    return value + params["noise"] ** 2


def drive(opt, n: int, start: int = 0, batch: int = 1) -> list[dict]:
    """Ask ``batch`` suggestions, tell their results, repeat; return the suggested params."""
    suggested = []
    trial_id = start
    while len(suggested) < n:
        pending = []
        for _ in range(batch):
            suggestion = opt.ask(trial_id)
            if suggestion is None:
                break
            pending.append((trial_id, suggestion.params))
            trial_id += 1
        if not pending:
            break
        for tid, params in pending:
            opt.tell(Trial(tid, params, "completed", objective(params)))
            suggested.append(params)
    return suggested


def build(name: str, seed: int = 0, space: Space = MIXED):
    return make_optimizer((name, CONFIG.get(name, {})), space, seed)


@pytest.fixture(params=available())
def algorithm(request) -> str:
    return request.param


def test_suggestions_are_valid_configurations(algorithm):
    opt = build(algorithm)
    for params in drive(opt, 40, batch=4):
        assert MIXED.validate(params) == params


def test_suggestion_is_plain_data(algorithm):
    suggestion = build(algorithm).ask(0)
    assert isinstance(suggestion, Suggestion)
    json.dumps(suggestion.params)  # plain Python values, storable as they are


def test_same_seed_and_results_give_same_suggestions(algorithm):
    assert drive(build(algorithm, seed=3), 30, batch=3) == drive(build(algorithm, seed=3), 30, batch=3)


@pytest.mark.parametrize("seeded", [a for a in available() if a not in SEED_INDEPENDENT])
def test_different_seeds_give_different_suggestions(seeded):
    algorithm = seeded
    assert drive(build(algorithm, seed=1), 10) != drive(build(algorithm, seed=2), 10)


def test_resume_from_history_continues_the_same_run(algorithm):
    """An optimizer told a stored history suggests what the original would have next."""
    original = build(algorithm, seed=5)
    history = []
    for params in drive(original, 25):
        history.append(Trial(len(history), params, "completed", objective(params)))
    resumed = build(algorithm, seed=5)
    for trial in history:
        resumed.tell(trial)
    assert drive(resumed, 5, start=25) == drive(original, 5, start=25)


def test_failed_trials_are_tolerated(algorithm):
    opt = build(algorithm)
    for trial_id in range(12):
        suggestion = opt.ask(trial_id)
        status = ["broken", "timeout", "lost", "completed"][trial_id % 4]
        value = objective(suggestion.params) if status == "completed" else math.nan
        opt.tell(Trial(trial_id, suggestion.params, status, value))
    assert MIXED.validate(opt.ask(12).params)


def test_parallel_suggestions_are_distinct(algorithm):
    """Eight asks with nothing told back (eight trials in flight) do not repeat a point."""
    opt = build(algorithm, seed=11)
    drive(opt, 20)
    batch = [opt.ask(100 + i).params for i in range(8)]
    keys = {json.dumps(p, sort_keys=True) for p in batch}
    assert len(keys) == 8


def test_told_trials_it_never_suggested(algorithm):
    """Resume and user-enqueued points tell trials the optimizer did not ask for."""
    opt = build(algorithm, seed=2)
    rng = np.random.default_rng(0)
    for trial_id in range(15):
        params = MIXED.sample(rng)
        opt.tell(Trial(trial_id, params, "completed", objective(params)))
    assert MIXED.validate(opt.ask(15).params)


def test_config_is_json(algorithm):
    opt = build(algorithm)
    assert isinstance(opt.config, dict)
    json.dumps(opt.config)
    assert opt.name == algorithm


def test_report_decisions_are_plain_data(algorithm):
    """Intermediate reports get "continue" or "prune"; pruned trials are then told."""
    opt = build(algorithm, seed=4)
    for trial_id in range(10):
        suggestion = opt.ask(trial_id)
        if suggestion is None:
            break
        assert suggestion.parent is None or isinstance(suggestion.parent, int)
        assert suggestion.checkpoint is None or isinstance(suggestion.checkpoint, int)
        last = 0
        for step in (1, 2, 3, 5, 9):
            last = step
            decision = opt.report(Report(trial_id, suggestion.params, step, objective(suggestion.params) + 1 / step))
            assert decision in (CONTINUE, PRUNE)
            if decision == PRUNE:
                break
        status = "pruned" if decision == PRUNE else "completed"
        value = objective(suggestion.params) + 1 / last
        opt.tell(Trial(trial_id, suggestion.params, status, value, last_step=float(last),
                       parent=suggestion.parent, checkpoint=suggestion.checkpoint))
    assert MIXED.validate(opt.ask(10).params)
