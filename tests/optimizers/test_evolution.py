"""Behaviour of regularized evolution beyond the conformance suite."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _problems import BRANIN_MIN, BRANIN_SPACE, best_regret, branin, tell_random

from daskhpo.optimizers import Trial, make_optimizer
from daskhpo.optimizers.evolution import Evolution
from daskhpo.space import Space

SPACE = Space(
    {
        "lr": "loguniform(1e-5, 1)",
        "units": "randint(1, 8)",
        "depth": "loguniform(1, 1000, discrete=True)",
        "kind": "choices(['a', 'b', 'c'])",
        "x": "uniform(-1, 1)",
    }
)


def children(parent: dict, n: int, seed: int = 0, **options) -> list[dict]:
    """``n`` children of a population made only of ``parent`` (the tournament must pick it)."""
    opt = Evolution(SPACE, seed=seed, population_size=2, tournament_size=1, **options)
    opt.tell(Trial(0, parent, "completed", 0.0))
    opt.tell(Trial(1, parent, "completed", 0.0))
    return [opt.ask(2 + i).params for i in range(n)]


def test_beats_random_search_on_branin():
    seeds = range(5)
    evo = [best_regret("evolution", BRANIN_SPACE, branin, 100, s, BRANIN_MIN) for s in seeds]
    rnd = [best_regret("random", BRANIN_SPACE, branin, 100, s, BRANIN_MIN) for s in seeds]
    assert np.median(evo) < np.median(rnd) / 3


def test_children_respect_bounds_and_types():
    for parent in (
        {"lr": 1e-5, "units": 1, "depth": 1, "kind": "a", "x": -1.0},
        {"lr": 1.0, "units": 8, "depth": 1000, "kind": "c", "x": 1.0},
    ):
        for child in children(parent, 200, mutation_scale=0.5):
            assert SPACE.validate(child) == child
            assert child != parent


def test_mutation_of_log_dimensions_is_scale_free():
    """A step on a log-scaled dimension is a factor, the same near 1e-4 as near 1e-1."""
    steps = {}
    for lr in (1e-4, 1e-1):
        parent = {"lr": lr, "units": 4, "depth": 30, "kind": "b", "x": 0.0}
        moved = [c["lr"] for c in children(parent, 300, mutation_rate=1.0) if c["lr"] != lr]
        steps[lr] = np.median(np.abs(np.log10(np.array(moved) / lr)))
    assert steps[1e-4] == pytest.approx(steps[1e-1], rel=0.25)
    # 5% of the log range (five decades) is about a quarter of a decade
    assert 0.05 < steps[1e-4] < 0.5


def test_categorical_and_integer_mutations_change_the_value():
    parent = {"lr": 1e-3, "units": 4, "depth": 30, "kind": "b", "x": 0.0}
    kids = children(parent, 300, mutation_rate=1.0)
    assert all(c["kind"] != "b" for c in kids)
    assert {c["kind"] for c in kids} == {"a", "c"}
    assert all(c["units"] != 4 for c in kids)


def test_population_ages_and_tournament_picks_the_best():
    opt = Evolution(BRANIN_SPACE, seed=0, population_size=5, tournament_size=5)
    tell_random(opt, BRANIN_SPACE, branin, 12)
    assert len(opt.population) == 5
    # the population is the five most recent trials
    rng = np.random.default_rng(0)
    recent = [BRANIN_SPACE.sample(rng) for _ in range(12)][-5:]
    for member, expected in zip(opt.population, recent):
        assert member["x1"] == pytest.approx(expected["x1"]) and member["x2"] == pytest.approx(expected["x2"])
    # a tournament over the whole population always picks its best member as the parent
    best = min(opt._population, key=lambda m: m[2])
    child = opt.ask(12).params
    unit = BRANIN_SPACE.to_unit(child)
    assert np.max(np.abs(unit - best[0])) < 0.5


def test_every_completed_trial_can_produce_a_child_without_waiting():
    opt = make_optimizer("evolution", BRANIN_SPACE, 3)
    tell_random(opt, BRANIN_SPACE, branin, 10)
    batch = [opt.ask(10 + i).params for i in range(8)]
    assert len({(p["x1"], p["x2"]) for p in batch}) == 8
    assert all(math.isfinite(branin(p)) for p in batch)


@pytest.mark.parametrize(
    "option, value",
    [("population_size", 1), ("tournament_size", 0), ("tournament_size", 50), ("mutation_scale", 0.0), ("mutation_rate", 2.0)],
)
def test_bad_options_name_the_option(option, value):
    with pytest.raises(ValueError, match=option):
        make_optimizer(("evolution", {option: value}), BRANIN_SPACE, 0)
