"""Conditional spaces (``when=``): parsing, validation, sampling and the history.

Every algorithm searches them (the conformance suite checks their suggestions); here: the
history, grid's tree walk, and what model-based algorithms learn from inactive dimensions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import daskhpo
from daskhpo.engine import FakeExecutor
from daskhpo.store.history import load_history

SPACE = {
    "kernel": "choices(['rbf', 'poly', 'linear'])",
    "degree": "choices([2, 3, 4], when={'kernel': 'poly'})",
    "coef0": "uniform(0, 1, when={'degree': [3, 4]})",  # nested: only for poly of degree 3 or 4
    "gamma": "loguniform(1e-4, 1, when={'kernel': ['rbf', 'poly']})",
    "shrink": "choices([True, False], when={'kernel': 'linear'})",
    "C": "loguniform(1e-3, 1e3)",
}


def test_strings_and_objects_round_trip():
    space = daskhpo.Space(SPACE)
    assert space["degree"].when == {"kernel": ["poly"]}
    assert str(space["gamma"]) == "loguniform(0.0001, 1.0, when={'kernel': ['rbf', 'poly']})"
    assert daskhpo.Space(space.to_dict()) == space
    objects = daskhpo.Space({"kernel": daskhpo.choices(["rbf", "poly"]),
                             "degree": daskhpo.randint(2, 5, when={"kernel": "poly"})})
    assert objects.to_dict()["degree"] == "randint(2, 5, when={'kernel': ['poly']})"
    assert not daskhpo.Space({"x": "uniform(0, 1)"}).conditional and space.conditional


@pytest.mark.parametrize("spec, message", [
    ({"d": "randint(2, 5, when={'kernel': 'poly'})"}, "parameter 'd': when= names 'kernel', which is not"),
    ({"k": "uniform(0, 1)", "d": "randint(2, 5, when={'k': 0.5})"}, "parameter 'd': when= parent 'k' must be categorical"),
    ({"k": "choices(['a', 'b'])", "d": "randint(2, 5, when={'k': 'c'})"}, r"parameter 'd': when=\{'k': 'c'\} can never hold"),
    ({"k": "choices(['a', 'b'])", "d": "randint(2, 5, when={'k': ['a', 3]})"}, "can never hold"),
    ({"a": "choices([1, 2], when={'b': 1})", "b": "choices([1, 2], when={'a': 1})"}, r"cycle \(a -> b -> a\)"),
    ({"a": "choices([1, 2], when={'a': 1})"}, "parameter 'a': when= names the parameter itself"),
    ({"k": "choices(['a'])", "d": "randint(2, 5, when='k')"}, "parameter 'd': when= takes a non-empty dict"),
    ({"k": "choices(['a'])", "d": "randint(2, 5, when={'k': []})"}, "can never hold"),
    ({"k": "choices(['a'])", "e": "fidelity(1, 8, when={'k': 'a'})"}, "unknown option"),
])
def test_invalid_conditions_name_the_parameter(spec, message):
    with pytest.raises(ValueError, match=message):
        daskhpo.Space(spec)


def test_sample_and_validate_leave_inactive_parameters_out():
    space = daskhpo.Space(SPACE)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        params = space.sample(rng)
        seen.add(tuple(sorted(params)))
        assert ("degree" in params) == (params["kernel"] == "poly")
        assert ("coef0" in params) == (params.get("degree") in (3, 4))
        assert ("gamma" in params) == (params["kernel"] in ("rbf", "poly"))
        assert ("shrink" in params) == (params["kernel"] == "linear")
        assert space.validate(params) == params
    assert len(seen) == 4  # rbf; poly/2; poly/3-4; linear
    full = {"kernel": "rbf", "degree": 3, "coef0": 0.5, "gamma": 0.1, "shrink": True, "C": 1.0}
    assert space.validate(full) == {"kernel": "rbf", "gamma": 0.1, "C": 1.0}  # inactive values dropped
    with pytest.raises(ValueError, match=r"missing \['degree'\]"):
        space.validate({"kernel": "poly", "gamma": 0.1, "C": 1.0})
    with pytest.raises(ValueError, match="parameter 'degree'"):
        space.validate({"kernel": "poly", "degree": 7, "gamma": 0.1, "C": 1.0})
    # unconditional spaces draw exactly what they drew before
    plain = daskhpo.Space({"x": "uniform(0, 1)", "k": "choices(['a', 'b'])"})
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    assert plain.sample(rng_a) == {"x": plain["x"].sample(rng_b), "k": plain["k"].sample(rng_b)}


def test_defaults_of_a_conditional_space_leave_inactive_ones_out():
    space = daskhpo.Space({"k": "choices(['a', 'b'], default_value='a')",
                           "d": "randint(1, 3, default_value=2, when={'k': 'b'})"})
    assert space.defaults() == {"k": "a"}


def svc(kernel, C, degree=None, coef0=None, gamma=None, shrink=None):
    assert (degree is not None) == (kernel == "poly")
    return {"rbf": 1.0, "poly": 0.5, "linear": 2.0}[kernel] + C / 1e3 + (coef0 or 0.0)


def test_random_search_runs_and_the_history_stores_nan_and_empty_for_inactive(tmp_path):
    path = tmp_path / "cond.nc"
    exp = daskhpo.build_experiment("cond", SPACE, storage=path, seed=0)
    exp.run(FakeExecutor(svc, slots=3), max_trials=30)
    ds = exp.history
    assert set(ds["status"].values) == {"completed"}  # the objective got only active parameters
    kernel = ds["kernel"].values.astype(str)
    assert ds["degree"].dtype == "float64" and ds["coef0"].dtype == "float64"
    assert np.isnan(ds["degree"].values[kernel != "poly"]).all()
    assert not np.isnan(ds["degree"].values[kernel == "poly"]).any()
    assert set(ds["shrink"].values[kernel != "linear"]) == {""}
    assert set(ds["shrink"].values[kernel == "linear"]) <= {"True", "False"}
    exp.close()
    loaded = load_history(path).records
    assert [r.params for r in loaded] == [r.params for r in exp.records()]
    assert all(isinstance(r.params.get("degree", 2), int) for r in loaded)
    assert all(isinstance(r.params.get("shrink", True), bool) for r in loaded)
    resumed = daskhpo.build_experiment("cond", SPACE, storage=path)
    resumed.run(FakeExecutor(svc), max_trials=35)
    assert len(resumed.records()) == 35 and math.isfinite(resumed.best["objective"])
    resumed.close()


def test_enqueue_in_a_conditional_space():
    exp = daskhpo.build_experiment("q", SPACE, seed=0)
    exp.enqueue({"kernel": "poly", "degree": 3, "coef0": 0.25, "gamma": 0.01, "C": 1.0})
    exp.run(FakeExecutor(svc), max_trials=1)
    assert exp.records()[0].params == {"kernel": "poly", "degree": 3, "coef0": 0.25, "gamma": 0.01, "C": 1.0}


def test_grid_walks_the_tree_of_a_conditional_space():
    exp = daskhpo.build_experiment("g", SPACE, algorithm=("grid", {"n_values": 2}))
    exp.run(FakeExecutor(svc, slots=3), max_trials=1000)
    ran = [r.params for r in exp.records()]
    # rbf: gamma x C; poly/2: gamma x C; poly/3-4: coef0 x gamma x C each; linear: shrink x C
    assert len(ran) == 4 + 4 + 2 * 8 + 4
    keys = {tuple(sorted(p.items())) for p in ran}
    assert len(keys) == len(ran)  # no configuration twice
    space = daskhpo.Space(SPACE)
    for params in ran:
        assert space.validate(params) == params  # only the active parameters of each branch
    assert {p["kernel"] for p in ran} == {"rbf", "poly", "linear"}
    assert {p["degree"] for p in ran if p["kernel"] == "poly"} == {2, 3, 4}
    assert sorted({p["C"] for p in ran}) == pytest.approx([1e-3, 1e3])


def test_conditional_grid_too_large_is_refused_naming_n_values():
    spec = {"k": "choices(['a', 'b'])", **{f"x{i}": "uniform(0, 1, when={'k': 'a'})" for i in range(8)}}
    with pytest.raises(ValueError, match="grid option 'n_values': the conditional grid has more than"):
        daskhpo.build_experiment("g", spec, algorithm=("grid", {"n_values": 10}))


# An objective whose best branch is narrow: 'poly' with degree 3 and coef0 near 0.8, so a
# model must learn from the trials where degree and coef0 were active.
def branchy(kernel, C, degree=None, coef0=None, gamma=None, shrink=None):
    value = {"rbf": 1.0, "poly": 0.6, "linear": 1.2}[kernel] + 0.1 * abs(math.log10(C))
    if degree is not None:
        value += 0.3 * abs(degree - 3)
    if coef0 is not None:
        value += 2.0 * (coef0 - 0.8) ** 2
    if gamma is not None:
        value += 0.05 * abs(math.log10(gamma) + 2)
    if shrink:
        value -= 0.1
    return value


@pytest.mark.parametrize("algorithm", ["tpe", "gp", "evolution"])
def test_model_based_algorithms_learn_inside_branches(algorithm):
    """tpe, gp and evolution model the trials whose parameters were inactive too (they used to
    drop them: every trial of this space lacks some parameter), and beat random search."""
    # gp: a cheaper acquisition search and budget (its suggestions cost ~100x tpe's)
    config = {"gp": {"n_initial": 10, "n_candidates": 200, "n_starts": 1, "refit_every": 5}}.get(algorithm, {})
    budget = 30 if algorithm == "gp" else 80

    def best(alg, seed):
        exp = daskhpo.build_experiment("m", SPACE, algorithm=(alg, config if alg == algorithm else {}), seed=seed)
        exp.run(FakeExecutor(branchy, slots=2), max_trials=budget)
        return exp.best["objective"], exp

    ours = [best(algorithm, seed) for seed in range(3)]
    rand = [best("random", seed)[0] for seed in range(3)]
    assert np.median([o for o, _ in ours]) < np.median(rand)
    for _, exp in ours:
        assert set(exp.history["status"].values) == {"completed"}
        late = [r.params for r in exp.records()][-10:]
        assert sum(p["kernel"] == "poly" for p in late) >= 4  # exploits the best branch
    model = ours[0][1].optimizer
    # every completed trial modelled, none dropped for its inactive parameters
    if algorithm == "evolution":
        assert len(model._population) == model.population_size
    else:
        assert len(model._y) == len(ours[0][1].records())


def test_an_enqueued_parent_value_activates_children_the_suggestion_left_out():
    exp = daskhpo.build_experiment("q", SPACE, seed=0)
    for _ in range(3):
        exp.enqueue({"kernel": "poly", "degree": 4})  # coef0 and gamma: drawn, as random search gave none
    exp.run(FakeExecutor(svc), max_trials=3)
    for record in exp.records():
        assert set(record.params) == {"kernel", "degree", "coef0", "gamma", "C"}
        assert record.params["degree"] == 4 and 0 <= record.params["coef0"] <= 1


@pytest.mark.parametrize("algorithm", [("asha", {"sampler": "tpe"}), ("hyperband", {"sampler": "evolution"}),
                                       ("pbt", {"population_size": 4})])
def test_multi_fidelity_algorithms_run_conditional_spaces(algorithm):
    """ASHA and Hyperband promote their sampler's (conditional) suggestions; PBT perturbs only
    active parameters: every trial runs, with exactly its active parameters."""
    space = {**SPACE, "epochs": "fidelity(1, 9, 3)"}

    def objective(kernel, C, epochs, degree=None, coef0=None, gamma=None, shrink=None):
        return branchy(kernel, C, degree, coef0, gamma, shrink) + 1.0 / epochs

    exp = daskhpo.build_experiment("mf", space, algorithm=algorithm, seed=0)
    exp.run(FakeExecutor(objective, slots=3), max_trials=40)
    records = exp.records()
    # (pbt ends when every member has trained to the maximum fidelity)
    assert len(records) >= 30 and {r.status for r in records} == {"completed"}
    parsed = daskhpo.Space(space)
    for record in records:
        assert parsed.validate(record.params) == record.params
    assert len({r.params["kernel"] for r in records}) == 3
