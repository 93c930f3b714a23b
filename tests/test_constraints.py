"""Constraints: ``{"objective": v, "constraints": [...]}``, feasible when every value is <= 0."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import daskhpo
from daskhpo.engine import FakeExecutor
from daskhpo.optimizers.random import RandomSearch
from daskhpo.optimizers.tpe import TPE
from daskhpo.records import TrialRecord
from daskhpo.results import InvalidResult, Result, parse_result
from daskhpo.store.history import load_history

SPACE = {"x": "uniform(-2, 2)", "y": "uniform(-2, 2)"}


def constrained(x, y):
    # The unconstrained minimum (0, 0) is infeasible: feasible points have x + y >= 1.
    return {"objective": x**2 + y**2, "constraints": [1 - x - y], "aux": x}


class _Records:
    """Mixin: keep every trial the optimizer is told, in order."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.told = []

    def tell(self, trial):
        self.told.append(trial)
        super().tell(trial)


class Recording(_Records, RandomSearch):
    """Random search that records what it is told."""


def test_parse_result_reads_constraints_and_refuses_bad_ones():
    assert parse_result({"objective": 1, "constraints": [0.5, -1], "acc": 2}) == Result(1.0, {"acc": 2.0}, (0.5, -1.0))
    listed = parse_result([{"name": "o", "type": "objective", "value": 1.0},
                           {"name": "c", "type": "constraint", "value": -2.0}])
    assert listed == Result(1.0, {}, (-2.0,))
    assert parse_result({"objective": 1, "constraints": ()}) == Result(1.0, {}, ())
    for bad, message in [
        (3.0, "must be a list of finite numbers"),
        ([math.nan], r"constraints\[0\] is nan"),
        ([1.0, math.inf], r"constraints\[1\] is inf"),
        (["a"], "must be a real number"),
        ("c", "got str"),
    ]:
        with pytest.raises(InvalidResult, match=message):
            parse_result({"objective": 1.0, "constraints": bad})
    with pytest.raises(InvalidResult, match="reserved for constraints"):
        parse_result({"objective": 1.0, "constraint_0": 1.0})


def test_record_round_trips_its_constraints_through_json():
    record = TrialRecord(3, {"x": 1.0}, "completed", 2.0, constraints=(0.5, -1.0))
    assert not record.feasible and TrialRecord(0, {}, "completed").feasible
    data = json.loads(json.dumps(record.to_json()))
    assert TrialRecord.from_json(data) == record
    assert "constraints" not in TrialRecord(0, {}, "completed").to_json()


def test_history_best_and_optimizer_see_constraints(tmp_path):
    path = tmp_path / "c.nc"
    recording = Recording(daskhpo.Space(SPACE), seed=0)
    exp = daskhpo.build_experiment("c", SPACE, algorithm=recording, storage=path)
    exp.run(FakeExecutor(constrained, slots=2), max_trials=40)
    ds = exp.history
    assert ds["feasible"].dtype == bool and "constraint_0" in ds and "aux" in ds
    assert "constraints" not in ds and "constraint_0" not in {m for r in exp.records() for m in r.metrics}
    c = ds["constraint_0"].values
    np.testing.assert_allclose(c, 1 - ds["x"].values - ds["y"].values)
    np.testing.assert_array_equal(ds["feasible"].values, c <= 0)
    assert 0 < ds["feasible"].sum() < 40
    feasible = ds.where(ds["feasible"], drop=True)
    assert exp.best["objective"] == float(feasible["objective"].min())
    assert exp.best["objective"] > float(ds["objective"].min())  # the overall minimum is infeasible
    # The optimizer: feasible trials as they are; infeasible ones completed, penalized
    # below every trial told before them; constraints among the metrics.
    worst = -math.inf
    for trial, record in zip(recording.told, sorted(exp.records(), key=lambda r: r.seq)):
        assert trial.id == record.trial and trial.status == "completed"
        worst = max(worst, record.objective)
        assert trial.constraints == record.constraints and trial.feasible == record.feasible
        assert dict(trial.metrics) == record.metrics == {"aux": record.params["x"]}  # nothing else among them
        if record.feasible:
            assert trial.objective == record.objective
        else:
            assert trial.objective == pytest.approx(worst + record.constraints[0])
    exp.close()
    # stored, loaded and resumed: the same records, and the same values told
    def key(records):
        return [(r.trial, r.constraints, r.feasible, r.metrics) for r in records]

    assert key(load_history(path).records) == key(exp.records())
    again_rec = Recording(daskhpo.Space(SPACE), seed=0)
    daskhpo.build_experiment("c", SPACE, algorithm=again_rec, storage=path).close()
    assert [t.objective for t in again_rec.told] == [t.objective for t in recording.told]


def test_best_is_none_without_a_feasible_trial():
    exp = daskhpo.build_experiment("none", SPACE, seed=0)
    exp.run(FakeExecutor(lambda x, y: {"objective": x, "constraints": [1.0]}), max_trials=4)
    assert exp.best is None and not exp.history["feasible"].any()


def test_maximize_with_constraints_penalizes_downwards():
    recording = Recording(daskhpo.Space(SPACE), seed=1)
    exp = daskhpo.build_experiment("max", SPACE, algorithm=recording, direction="maximize")
    exp.run(FakeExecutor(constrained, slots=1), max_trials=20)
    records = sorted(exp.records(), key=lambda r: r.seq)
    told = [t.objective for t in recording.told]
    for i, record in enumerate(records):
        if not record.feasible:  # told worse (higher, as it minimizes -objective) than all before
            assert told[i] > max(-r.objective for r in records[: i + 1])
    best = exp.best
    assert best["objective"] == max(r.objective for r in records if r.feasible)


def test_invalid_constraints_break_the_trial_with_a_clear_message():
    exp = daskhpo.build_experiment("bad", SPACE, seed=0)
    with pytest.raises(daskhpo.TooManyBrokenTrials, match="'constraints' must be a list of finite numbers"):
        exp.run(FakeExecutor(lambda x, y: {"objective": x, "constraints": [math.nan]}), max_trials=2, max_broken=1)
    broken = [r for r in exp.records() if r.status == "broken"]
    assert len(broken) == 2 and "constraints[0] is nan" in broken[0].error


def test_constrained_tpe_finds_a_good_feasible_point():
    exp = daskhpo.build_experiment("tpe", SPACE, algorithm=("tpe", {"n_initial": 10}), seed=0)
    exp.run(FakeExecutor(constrained, slots=2), max_trials=60)
    ds = exp.history
    late = ds.isel(trial=slice(30, None))
    assert float(late["feasible"].mean()) > float(ds.isel(trial=slice(0, 10))["feasible"].mean())
    assert exp.best["objective"] < 0.8  # the constrained optimum is 0.5 at (0.5, 0.5)


def test_constraints_and_maximize_through_a_dask_cluster(client):
    exp = daskhpo.build_experiment("dask", SPACE, seed=0, direction="maximize")
    exp.workon(lambda x, y: {"objective": x + y, "constraints": [x + y - 1]}, max_trials=8, client=client)
    ds = exp.history
    assert "constraint_0" in ds and ds["feasible"].dtype == bool
    np.testing.assert_array_equal(ds["feasible"].values, ds["objective"].values <= 1)
    best = exp.best
    assert best["objective"] == float(ds["objective"].where(ds["feasible"]).max()) and best["objective"] <= 1


class RecordingTPE(_Records, TPE):
    """TPE, recording what it is told."""


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_an_algorithm_that_handles_constraints_is_told_the_raw_objective(direction):
    assert RecordingTPE.handles_constraints and not RandomSearch.handles_constraints
    recording = RecordingTPE(daskhpo.Space(SPACE), seed=0)
    exp = daskhpo.build_experiment("raw", SPACE, algorithm=recording, direction=direction)
    exp.run(FakeExecutor(constrained, slots=2), max_trials=30)
    sign = 1 if direction == "minimize" else -1
    records = {r.trial: r for r in exp.records()}
    assert any(not r.feasible for r in records.values()) and any(r.feasible for r in records.values())
    for trial in recording.told:
        record = records[trial.id]
        assert trial.objective == sign * record.objective  # no penalty, infeasible or not
        assert trial.constraints == record.constraints == (pytest.approx(1 - record.params["x"] - record.params["y"]),)
    assert recording._v == [max(1 - t.params["x"] - t.params["y"], 0.0) for t in recording.told]


def test_trial_constraints_are_a_field_and_the_old_metric_keys_warn():
    from daskhpo.optimizers import Trial

    trial = Trial(0, {}, "completed", 1.0, {"aux": 3.0}, constraints=(2.0, -1.0))
    assert trial.constraints == (2.0, -1.0) and not trial.feasible and trial.metrics == {"aux": 3.0}
    assert Trial(0, {}, "completed", 1.0, {"aux": 3.0}).constraints == () and Trial(0, {}, "completed").feasible
    # optimizers once read them among the metrics: still answered, with a pointer
    with pytest.warns(DeprecationWarning, match="read trial.constraints"):
        assert trial.metrics["constraint_1"] == -1.0
    with pytest.warns(DeprecationWarning, match="trial.feasible"):
        assert trial.metrics["feasible"] == 0.0
    with pytest.raises(KeyError):
        trial.metrics["constraint_2"]
    assert "constraint_0" not in trial.metrics and list(trial.metrics) == ["aux"]


def test_constrained_tpe_ranks_feasible_first_then_by_violation():
    from daskhpo.optimizers import Trial

    tpe = TPE(daskhpo.Space(SPACE), seed=0, n_initial=2, gamma=0.5)
    values = [(0.0, 3.0), (1.0, 0.5), (5.0, -1.0), (9.0, -2.0), (-4.0, 1.0), (2.0, 0.0)]  # (objective, constraint)
    for i, (objective, c) in enumerate(values):
        tpe.tell(Trial(i, {"x": 0.1 * i, "y": 0.0}, "completed", objective, constraints=(c,)))
    num, cat, y, v = tpe._history_arrays()
    order = np.lexsort((y, v))
    # feasible (2, 3, 5) by objective, then infeasible by violation: 1 (0.5), 4 (1.0), 0 (3.0)
    assert order.tolist() == [5, 2, 3, 1, 4, 0]
    assert tpe._infeasible


@pytest.mark.parametrize("algorithm", ["tpe", "gp"])
def test_constraint_aware_algorithms_find_the_constrained_optimum(algorithm):
    """The optimum of x**2 + y**2 subject to x + y >= 1 lies on the constraint's boundary."""
    def best(seed):
        n_initial, n = (10, 40) if algorithm == "tpe" else (8, 22)  # gp: fewer, dearer suggestions
        exp = daskhpo.build_experiment("c", SPACE, algorithm=(algorithm, {"n_initial": n_initial}), seed=seed)
        exp.run(FakeExecutor(constrained, slots=1), max_trials=n)
        return exp.best["objective"]

    assert np.median([best(seed) for seed in range(3)]) < 0.6  # the constrained optimum is 0.5


@pytest.mark.parametrize("algorithm", ["tpe", "gp"])
def test_probability_of_feasibility_separates_the_feasible_region(algorithm):
    from daskhpo.optimizers import Trial, make_optimizer

    space = daskhpo.Space(SPACE)
    opt = make_optimizer(algorithm, space, 0)
    rng = np.random.default_rng(0)
    for i in range(40):
        p = space.sample(rng)
        opt.tell(Trial(i, p, "completed", p["x"] ** 2 + p["y"] ** 2, constraints=(1 - p["x"] - p["y"],)))
    points = [space.sample(rng) for _ in range(400)]
    feasible = np.array([p["x"] + p["y"] >= 1 for p in points])
    enc = opt._enc
    num = np.array([enc.encode(p)[0] for p in points])
    cat = np.zeros((len(points), 0), dtype=np.int64)
    if algorithm == "tpe":
        arrays = opt._history_arrays()
        log_p = opt._log_feasibility(arrays[0], arrays[1], num, cat)
    else:
        from daskhpo.optimizers.gp import _log_pof

        log_p, _ = _log_pof(opt._constraint_models(), opt._features(num, cat))
    p = np.exp(log_p)
    assert p[feasible].mean() > 0.6 > 0.3 > p[~feasible].mean()
    # the classification is right for most points away from the boundary
    far = np.array([abs(q["x"] + q["y"] - 1) > 0.5 for q in points])
    assert ((p > 0.5) == feasible)[far].mean() > 0.9


def test_tpe_feasibility_weight_steers_suggestions_to_the_feasible_side():
    from daskhpo.optimizers import Trial, make_optimizer

    space = daskhpo.Space(SPACE)
    with pytest.raises(ValueError, match="tpe option 'feasibility_weight': must be a number >= 0, got -1"):
        make_optimizer(("tpe", {"feasibility_weight": -1}), space, 0)

    def feasible_share(weight):
        opt = make_optimizer(("tpe", {"feasibility_weight": weight, "n_initial": 5}), space, 0)
        rng = np.random.default_rng(0)
        for i in range(30):
            p = space.sample(rng)
            opt.tell(Trial(i, p, "completed", -p["x"] - p["y"], constraints=(p["x"] + p["y"] - 1,)))
        # the objective pulls to x + y = 4, the constraint holds only below x + y = 1; each
        # suggestion is told before the next (with 40 pending, the liars alone keep tpe on the
        # feasible side whatever the weight: that is not what this test is about)
        asked = []
        for i in range(30, 70):
            p = opt.ask(i).params
            asked.append(p)
            opt.tell(Trial(i, p, "completed", -p["x"] - p["y"], constraints=(p["x"] + p["y"] - 1,)))
        return np.mean([p["x"] + p["y"] <= 1 for p in asked])

    assert feasible_share(4.0) > feasible_share(0.0)


@pytest.mark.parametrize("algorithm, direction", [("recording", "maximize"), ("recording", "minimize"),
                                                  ("tpe", "maximize")])
def test_experiment_trials_are_what_the_optimizer_was_told(tmp_path, algorithm, direction):
    """``Experiment.trials``: signed by the direction and penalized like the optimizer's tells
    (it once returned the user's value under maximize, and no penalty), live, resumed and loaded."""
    path = tmp_path / "told.nc"
    recording = (Recording if algorithm == "recording" else RecordingTPE)(daskhpo.Space(SPACE), seed=0)
    exp = daskhpo.build_experiment("told", SPACE, algorithm=recording, direction=direction, storage=path)
    exp.run(FakeExecutor(constrained, slots=2), max_trials=12)
    records = {r.trial: r for r in exp.records()}
    assert any(not r.feasible for r in records.values())

    def key(trials):
        return sorted((t.id, t.status, t.objective, t.constraints) for t in trials)

    assert key(exp.trials) == key(recording.told)
    sign = -1.0 if direction == "maximize" else 1.0
    for trial in exp.trials:
        if records[trial.id].feasible or algorithm == "tpe":
            assert trial.objective == sign * records[trial.id].objective
    exp.close()
    again_rec = type(recording)(daskhpo.Space(SPACE), seed=0)
    again = daskhpo.build_experiment("told", SPACE, algorithm=again_rec, storage=path)
    assert key(again.trials) == key(again_rec.told) == key(recording.told)
    again.close()
    if algorithm == "recording":  # read-only: its algorithm ("random" by name) handles no constraints
        assert key(daskhpo.load_experiment(path).trials) == key(recording.told)


def test_the_worker_reads_constraints_into_their_own_field():
    from daskhpo.engine import TrialTask, run_trial

    record = run_trial(constrained, TrialTask(0, {"x": 1.0, "y": 0.5}, "k"), {}).record
    assert record.status == "completed" and record.objective == 1.25
    assert record.constraints == (-0.5,) and record.feasible and record.metrics == {"aux": 1.0}


def reports_then_returns_constraints(x, y):
    for step in (1, 2, 3):
        daskhpo.report(step, objective=x + step)
    return {"objective": x, "constraints": [5.0]}


def test_a_timed_out_or_pruned_trial_keeps_no_constraints_of_a_result_it_never_returned():
    # the fake runs the objective to its end, then cuts the outcome at the time-out or the prune
    exp = daskhpo.build_experiment("cut", SPACE, seed=0)
    with pytest.raises(daskhpo.TooManyBrokenTrials, match="trial_timeout"):
        exp.run(FakeExecutor(constrained, duration=2.0, trial_timeout=1.0), max_trials=1, max_broken=2)
    timed_out = [r for r in exp.records() if r.status == "timeout"]
    assert timed_out and all(r.constraints == () and r.feasible for r in timed_out)
    asha = ("asha", {"min_resource": 1, "max_resource": 3, "reduction_factor": 3})
    exp = daskhpo.build_experiment("cut", SPACE, seed=0, algorithm=asha)
    exp.run(FakeExecutor(reports_then_returns_constraints, slots=1), max_trials=12)
    pruned = [r for r in exp.records() if r.status == "pruned"]
    assert pruned and all(r.constraints == () for r in pruned)
    assert all(r.constraints == (5.0,) for r in exp.records() if r.status == "completed")
