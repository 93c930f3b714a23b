"""cmaes, sobol/qmc, motpe and auto beyond the conformance suite: what each one promises."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import qmc

from daskhpo.optimizers import Trial, make_optimizer
from daskhpo.optimizers.auto import GP_MAX_BUDGET, choose
from daskhpo.optimizers.motpe import select_by_hypervolume
from daskhpo.space import Space

BOX = Space({"a": "uniform(0, 1)", "b": "uniform(0, 1)", "c": "uniform(0, 1)"})


def sphere(params: dict) -> float:
    return sum((params[k] - 0.3) ** 2 for k in ("a", "b", "c"))


def run_async(opt, fn, n: int, in_flight: int = 8) -> list[float]:
    """Keep ``in_flight`` trials asked; tell them back in a scrambled order."""
    values, running, next_id = [], [], 0
    while len(values) < n:
        while len(running) < in_flight:
            running.append((next_id, opt.ask(next_id).params))
            next_id += 1
        tid, params = running.pop((next_id * 5) % len(running))
        values.append(fn(params))
        opt.tell(Trial(tid, params, "completed", values[-1]))
    return values


# -- sobol -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sobol", "qmc"])
def test_sobol_trial_i_is_point_i_of_the_seeded_scrambled_sequence(name):
    expected = qmc.Sobol(3, scramble=True, seed=np.random.default_rng(4)).random(16)
    opt = make_optimizer(name, BOX, 4)
    got = np.array([[s.params[k] for k in "abc"] for s in (opt.ask(i) for i in range(16))])
    np.testing.assert_allclose(got, expected)
    assert [opt.ask(0).params[k] for k in "abc"] == pytest.approx(expected[0])  # asked again, out of order
    # a fresh optimizer (a resumed run) asked for trial 11 continues the same sequence
    fresh = make_optimizer(name, BOX, 4)
    assert [fresh.ask(11).params[k] for k in "abc"] == pytest.approx(expected[11])


# -- cmaes -----------------------------------------------------------------------------------


def test_cmaes_converges_with_trials_in_flight_and_results_out_of_order():
    values = run_async(make_optimizer("cmaes", BOX, 0), sphere, 400)
    assert min(values) < 1e-4
    assert min(values[:20]) > min(values)  # it learnt: the best came after the first draws


def test_cmaes_never_waits_for_a_generation():
    opt = make_optimizer("cmaes", BOX, 0)
    asked = [opt.ask(i).params for i in range(50)]  # nothing told: 50 draws, no None
    assert len({tuple(p.values()) for p in asked}) == 50
    assert len(opt.pending) == 50


def test_cmaes_restarts_with_a_doubled_population_and_resumes_the_same():
    flat = make_optimizer(("cmaes", {"popsize": 4}), BOX, 1)
    run_async(flat, lambda p: 1.0, 200)  # no progress: the stopping tests fire
    assert flat.n_restarts >= 1
    assert flat._cma.population_size == 4 * 2**flat.n_restarts
    # told the same history, a fresh optimizer is in the same state after the restarts
    original = make_optimizer(("cmaes", {"popsize": 4}), BOX, 1)
    history = []
    for i in range(300):
        params = original.ask(i).params
        history.append(Trial(i, params, "completed", 1.0))
        original.tell(history[-1])
    resumed = make_optimizer(("cmaes", {"popsize": 4}), BOX, 1)
    for trial in history:
        resumed.tell(trial)
    assert original.n_restarts == resumed.n_restarts >= 1
    assert [resumed.ask(300 + i).params for i in range(4)] == [original.ask(300 + i).params for i in range(4)]


def test_cmaes_searches_integers_and_categories_with_a_margin():
    space = Space({"x": "uniform(-1, 1)", "n": "randint(0, 20)", "kind": "choices(['a', 'b', 'c'])"})

    def fn(p):
        return p["x"] ** 2 + (p["n"] - 7) ** 2 + (p["kind"] != "b")

    opt = make_optimizer("cmaes", space, 0)
    values = run_async(opt, fn, 300)
    assert min(values) < 0.01  # n = 7 and kind = "b" found
    # the margin keeps the integer coordinate from collapsing: late draws still vary n
    late = [opt.ask(10_000 + i).params["n"] for i in range(200)]
    assert len(set(late)) >= 2


# -- motpe -----------------------------------------------------------------------------------


def test_hypervolume_selection_prefers_the_point_that_covers_most():
    front = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    assert select_by_hypervolume(front, 1, np.array([1.1, 1.1])).tolist() == [1]
    assert sorted(select_by_hypervolume(front, 3, np.array([1.1, 1.1])).tolist()) == [0, 1, 2]


def test_motpe_good_group_is_the_first_front_with_dominated_points_weighted_down():
    opt = make_optimizer(("motpe", {"gamma": 0.5}), BOX, 0)
    vectors = [(0.0, 1.0), (1.0, 0.0), (0.5, 0.5), (0.9, 0.9), (0.8, 0.95), (1.0, 1.0)]
    rng = np.random.default_rng(0)
    for i, v in enumerate(vectors):
        opt.tell(Trial(i, BOX.sample(rng), "completed", math.nan, values=v))
    y = np.zeros(len(vectors))
    good, bad, weights = opt._split(y, y)
    assert sorted(good.tolist()) == [0, 1, 2]  # the first front, whole (3 = half of 6)
    assert sorted(bad.tolist()) == [3, 4, 5]
    assert weights.min() > 0.01  # all on the front: each covers volume of its own


def test_motpe_finds_a_better_front_than_random():
    def two(p):
        return (sphere(p), sum((p[k] - 0.7) ** 2 for k in "abc"))

    def hv(opt):
        vals = []
        for i in range(120):
            params = opt.ask(i).params
            vals.append(two(params))
            opt.tell(Trial(i, params, "completed", math.nan, values=vals[-1]))
        from daskhpo.pareto import hypervolume

        return hypervolume(np.array(vals), [1.5, 1.5])

    assert hv(make_optimizer("motpe", BOX, 0)) > hv(make_optimizer("random", BOX, 0))


# -- auto ------------------------------------------------------------------------------------


def test_auto_rule():
    """docs/algorithms.md's table: gp up to GP_MAX_BUDGET trials on a small space, cmaes above, else tpe."""
    assert GP_MAX_BUDGET == 1000  # gp ahead at 100 and 200 trials (hpobench.md), cmaes ahead of tpe at 600
    assert choose(BOX) == "gp"  # budget unknown
    assert choose(BOX, budget=200) == "gp"
    assert choose(BOX, budget=1000) == "gp"
    assert choose(BOX, budget=1001) == "cmaes"
    # the benchmark's mixed problem: one categorical of four parameters is still a small space,
    # and cmaes, not tpe, runs it past the GP's budget (ahead of tpe at 200 trials there)
    mixed = Space({"x": "uniform(-5, 5)", "lr": "loguniform(1e-4, 1)", "n": "randint(1, 32)", "k": "choices(['a', 'b'])"})
    assert choose(mixed, budget=100) == "gp"
    assert choose(mixed, budget=5000) == "cmaes"
    # HPOBench's grids, searched as integer indices
    grids = Space({name: f"randint(0, {n - 1})" for name, n in {"a": 10, "b": 10, "d": 3, "lr": 10, "w": 10}.items()})
    assert choose(grids, budget=100) == choose(grids, budget=200) == "gp"
    assert choose(grids, budget=5000) == "cmaes"
    # not small: more than half categorical, more than 10 parameters, conditional
    categorical = Space({"a": "choices([1, 2])", "b": "choices([1, 2])", "x": "uniform(0, 1)"})
    assert choose(categorical) == choose(categorical, budget=5000) == "tpe"
    assert choose(Space({f"x{i}": "uniform(0, 1)" for i in range(11)}), budget=100) == "tpe"
    conditional = Space({"m": "choices(['a', 'b'])", "x": "uniform(0, 1, when={'m': 'a'})", "y": "uniform(0, 1)"})
    assert choose(conditional) == choose(conditional, budget=5000) == "tpe"
    assert choose(BOX, n_objectives=2) == choose(BOX, budget=5000, n_objectives=2) == "motpe"


def test_auto_with_a_larger_budget_runs_cmaes_as_cmaes_would():
    opt = make_optimizer(("auto", {"budget": 5000}), BOX, 5)
    cmaes = make_optimizer("cmaes", BOX, 5)
    assert opt.chosen == "cmaes"
    for i in range(12):  # past cmaes's first generation: the same suggestions, told the same values
        a, b = opt.ask(i).params, cmaes.ask(i).params
        assert a == b
        opt.tell(Trial(i, a, "completed", sphere(a)))
        cmaes.tell(Trial(i, b, "completed", sphere(b)))


def test_auto_runs_its_choice_and_switches_on_objective_vectors():
    opt = make_optimizer(("auto", {"budget": 50}), BOX, 3)
    gp = make_optimizer("gp", BOX, 3)
    assert opt.chosen == "gp" and opt.fills_idle_slots
    assert [opt.ask(i).params for i in range(3)] == [gp.ask(i).params for i in range(3)]
    opt.tell(Trial(0, opt.ask(0).params, "broken"))  # not completed: no decision yet
    assert opt.chosen == "gp"
    opt.tell(Trial(1, BOX.sample(np.random.default_rng(1)), "completed", math.nan, values=(1.0, 2.0)))
    assert opt.chosen == "motpe"
    assert set(opt.pending) == {2}  # asked of gp, still running
    opt.tell(Trial(2, BOX.sample(np.random.default_rng(2)), "completed", math.nan, values=(2.0, 1.0)))
    assert opt.pending == ()
    assert opt.config == {"budget": 50}


@pytest.mark.parametrize("algorithm", ["cmaes", "sobol", "motpe", "auto"])
def test_a_pickled_optimizer_suggests_what_the_original_would(algorithm):
    """Experiments are pickled (driver sessions, Dask): the copy continues the same run."""
    opt = make_optimizer(algorithm, BOX, 0)
    for i in range(24):
        params = opt.ask(i).params
        opt.tell(Trial(i, params, "completed", sphere(params)))
    import pickle

    copy = pickle.loads(pickle.dumps(opt))
    assert [copy.ask(24 + i).params for i in range(3)] == [opt.ask(24 + i).params for i in range(3)]
