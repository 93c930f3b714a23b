"""Several objectives: ``objectives=``, the history, the Pareto front, the algorithms, plots and tools."""

from __future__ import annotations

import io
import itertools
import json
import math

import numpy as np
import pytest
from bokeh.document import Document

import daskhpo
from daskhpo.engine import FakeExecutor
from daskhpo.integrations.cli import main
from daskhpo.optimizers import Trial, make_optimizer
from daskhpo.pareto import crowding_distance, hypervolume, non_dominated, non_dominated_sort
from daskhpo.records import TrialRecord
from daskhpo.viz import plot
from daskhpo.viz.dashboard import TrialFeed, _Session, make_app
from daskhpo.viz.progress import ProgressBar

SPACE = {"x": "uniform(0, 1)", "y": "uniform(0, 1)"}
OBJECTIVES = {"error": "minimize", "speed": "maximize"}


def tradeoff(x, y):
    """error falls with x, speed falls with x: a true trade-off; y only hurts both."""
    return {"error": (1 - x) ** 2 + y, "speed": 1 - x**2 - y, "memory": 3.0}


def brute_front(ds, names=("error", "speed"), signs=(1.0, -1.0)):
    """Trial ids of the non-dominated completed trials, by definition (pairwise)."""
    done = [(int(t), [s * float(ds[f"objective_{n}"].sel(trial=t)) for n, s in zip(names, signs)])
            for t in ds.trial.values if ds.status.sel(trial=t) == "completed"]
    front = []
    for t, a in done:
        if not any(all(bi <= ai for ai, bi in zip(a, b)) and b != a for _, b in done):
            front.append(t)
    return front


# -- pareto.py -----------------------------------------------------------------------------------


def test_non_dominated_sort_and_crowding_by_definition():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 6, size=(40, 3)).astype(float)  # many ties and duplicates
    rank = non_dominated_sort(y)

    def dominates(a, b):
        return np.all(a <= b) and np.any(a < b)

    for i, j in itertools.product(range(len(y)), repeat=2):
        if dominates(y[i], y[j]):
            assert rank[i] < rank[j]
    for i in range(len(y)):  # rank k > 0: something of rank k - 1 dominates it
        if rank[i] > 0:
            assert any(dominates(y[j], y[i]) for j in np.flatnonzero(rank == rank[i] - 1))
    np.testing.assert_array_equal(non_dominated(y), rank == 0)
    for seed in range(5):  # the 2-d sweep agrees with the definition, ties and duplicates included
        y2 = np.random.default_rng(seed).integers(0, 5, size=(30, 2)).astype(float)
        by_definition = [not any(dominates(b, a) for b in y2) for a in y2]
        np.testing.assert_array_equal(non_dominated(y2), by_definition)
        np.testing.assert_array_equal(non_dominated_sort(y2) == 0, by_definition)
    crowd = crowding_distance([[0, 4], [1, 2], [3, 1], [4, 0]])
    assert crowd[0] == crowd[3] == math.inf
    assert crowd[1] == pytest.approx(3 / 4 + 3 / 4) and crowd[2] == pytest.approx(3 / 4 + 2 / 4)


def test_hypervolume_known_values():
    assert hypervolume([[0, 1], [1, 0]], [2, 2]) == 3.0
    assert hypervolume([[1, 1], [1, 1], [3, 0]], [2, 2]) == 1.0  # a point outside the box adds nothing
    assert hypervolume([[1, 1, 1]], [2, 3, 4]) == 6.0
    # three unit-offset points: 3 boxes of 2, minus 3 pairwise overlaps of 1, plus the triple one
    assert hypervolume([[0, 1, 1], [1, 0, 1], [1, 1, 0]], [2, 2, 2]) == 4.0
    assert hypervolume(np.zeros((0, 2)), [1, 1]) == 0.0
    with pytest.raises(ValueError, match="reference point has 2 values, the points 3"):
        hypervolume([[1, 1, 1]], [2, 2])


def test_hypervolume_matches_a_grid_count_in_3d():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 8, size=(25, 3))
    ref = np.array([8, 8, 8])
    # every unit cell [i, i+1) x ... counts when some point is <= its lower corner
    cells = np.array(list(itertools.product(range(8), repeat=3)))
    covered = np.any(np.all(y[None, :, :] <= cells[:, None, :], axis=2), axis=1)
    assert hypervolume(y, ref) == pytest.approx(float(covered.sum()))


def test_hypervolume_of_a_dense_front_approaches_the_analytic_one():
    f1 = np.linspace(0, 1, 2001)
    assert hypervolume(np.c_[f1, 1 - np.sqrt(f1)], [1.1, 1.1]) == pytest.approx(1.21 - 1 / 3, abs=1e-3)
    u, v = np.meshgrid(np.linspace(0, 1, 40), np.linspace(0, 1, 40))
    a, b = u.ravel() * np.pi / 2, v.ravel() * np.pi / 2  # the positive octant of the unit sphere
    sphere = np.c_[np.cos(a) * np.cos(b), np.cos(a) * np.sin(b), np.sin(a)]
    hv = hypervolume(sphere, [1.1, 1.1, 1.1])
    assert 1.1**3 - np.pi / 6 - 0.03 < hv < 1.1**3 - np.pi / 6  # from below, as a finite sample must


# -- declaring objectives --------------------------------------------------------------------------


@pytest.mark.parametrize("objectives, message", [
    ({"error": "minimise", "speed": "maximize"}, "objective 'error': direction must be 'minimize' or 'maximize'"),
    ({"error": "minimize", "a/b": "minimize"}, "objective 'a/b': its history variable.*cannot be stored"),
    ({"error": "minimize"}, "give two or more"),
    (["error", "speed"], "objectives must be a dict"),
    ({"error": "minimize", "x": "minimize"}, None),  # variables objective_x and x do not clash
    ({"error": "minimize", "status": "minimize"}, None),  # nor objective_status and status
    ({"error": "minimize", "objective": "minimize"}, "'objective' is the single objective's"),
])
def test_objectives_are_checked_and_named(objectives, message):
    if message is None:
        assert daskhpo.build_experiment("mo", SPACE, objectives=objectives).objectives == objectives
        return
    with pytest.raises(ValueError, match=message):
        daskhpo.build_experiment("mo", SPACE, objectives=objectives)


def test_direction_conflicts_and_single_objective_algorithms_are_refused():
    with pytest.raises(ValueError, match="direction='minimize' and objectives=.*both given"):
        daskhpo.build_experiment("mo", SPACE, objectives=OBJECTIVES, direction="minimize")
    for algorithm in ("tpe", "gp", "asha", "grid"):
        with pytest.raises(ValueError, match=f"algorithm '{algorithm}' optimizes one objective.*'parego'"):
            daskhpo.build_experiment("mo", SPACE, algorithm=algorithm, objectives=OBJECTIVES)
    with pytest.raises(ValueError, match="keep_checkpoints='best' needs one objective"):
        daskhpo.build_experiment("mo", SPACE, objectives=OBJECTIVES, keep_checkpoints="best")


@pytest.mark.parametrize("returned, message", [
    (0.5, "must return a dict with those keys, got float 0.5"),
    ({"error": 1.0}, r"objective\(s\) \['speed'\] missing"),
    ({"error": 1.0, "speed": "fast"}, "objective 'speed' must be a real number, got str 'fast'"),
    ({"error": math.nan, "speed": 1.0}, "objective 'error' is nan"),
    ({"error": 1.0, "speed": 1.0, "objective": 2.0}, r"has the key\(s\) \['objective'\]"),
    ({"error": 1.0, "speed": 1.0, "objective_speed": 2.0}, r"has the key\(s\) \['objective_speed'\]"),
])
def test_bad_results_break_the_trial_with_a_message_naming_the_objective(returned, message):
    exp = daskhpo.build_experiment("mo", SPACE, objectives=OBJECTIVES, seed=0)
    with pytest.raises(daskhpo.TooManyBrokenTrials):
        exp.run(FakeExecutor(lambda x, y: returned, slots=1), max_trials=1, max_broken=0)
    (record,) = exp.records()
    assert record.status == "broken" and record.values == ()
    assert record.error.startswith("InvalidResult") and __import__("re").search(message, record.error)
    assert exp.pareto_front == []


# -- the history, the front, resume -----------------------------------------------------------------


def test_history_holds_one_variable_per_objective_and_the_front(tmp_path):
    exp = daskhpo.build_experiment("mo", SPACE, objectives=OBJECTIVES, seed=1, storage=tmp_path / "mo.nc")
    exp.run(FakeExecutor(tradeoff, slots=3), max_trials=40)
    ds = exp.history
    assert json.loads(ds.attrs["objectives"]) == OBJECTIVES and "direction" not in ds.attrs
    assert "objective" not in ds and ds["objective_speed"].attrs["direction"] == "maximize"
    assert ds["error"].dtype == object  # the bookkeeping variable of error texts, untouched
    expected = np.array([[v["error"], v["speed"]] for v in map(tradeoff, ds.x.values, ds.y.values)])
    np.testing.assert_allclose(np.c_[ds.objective_error.values, ds.objective_speed.values], expected)
    np.testing.assert_allclose(ds.memory.values, 3.0)  # other metrics as before
    front = exp.pareto_front
    assert [f["trial"] for f in front] == brute_front(ds)
    assert 1 < len(front) < 40
    first = front[0]
    assert first["values"] == {k: v for k, v in tradeoff(**first["params"]).items() if k in OBJECTIVES}
    with pytest.raises(ValueError, match=r"several objectives \(error, speed\).*experiment.pareto_front"):
        _ = exp.best
    # the optimizer is told minimized values: speed negated
    record = exp.records()[0]
    told = exp._teller.trial(record)
    assert told.values == (record.values[0], -record.values[1]) and math.isnan(told.objective) and told.ok


def test_resume_and_load_keep_the_objectives_and_the_front(tmp_path):
    path = tmp_path / "mo.nc"
    exp = daskhpo.build_experiment("mo", SPACE, algorithm="evolution", objectives=OBJECTIVES, seed=2, storage=path)
    exp.run(FakeExecutor(tradeoff, slots=2), max_trials=25)
    front = exp.pareto_front
    exp.close()
    with pytest.raises(ValueError, match="objectives=.*holds an experiment with objectives"):
        daskhpo.build_experiment("mo", SPACE, objectives={"error": "minimize", "speed": "minimize"}, storage=path)
    with pytest.raises(ValueError, match="direction='maximize'.*holds an experiment with objectives"):
        daskhpo.build_experiment("mo", SPACE, direction="maximize", storage=path)
    loaded = daskhpo.load_experiment(path)
    assert loaded.objectives == OBJECTIVES and loaded.pareto_front == front
    resumed = daskhpo.build_experiment("mo", SPACE, storage=path)  # objectives and algorithm from the storage
    assert resumed.objectives == OBJECTIVES and resumed.pareto_front == front
    # the resumed optimizer is in the live one's state: the same next suggestions
    assert [resumed.optimizer.ask(100 + i).params for i in range(4)] == [exp.optimizer.ask(100 + i).params for i in range(4)]
    resumed.run(FakeExecutor(tradeoff, slots=2), max_trials=35)
    assert len(resumed.records()) == 35 and all(len(r.values) == 2 for r in resumed.records())
    resumed.close()
    single = daskhpo.build_experiment("one", SPACE, storage=tmp_path / "one.nc")
    single.close()
    with pytest.raises(ValueError, match="holds an experiment with one objective"):
        daskhpo.build_experiment("one", SPACE, objectives=OBJECTIVES, storage=tmp_path / "one.nc")


def test_values_travel_through_the_journal():
    record = TrialRecord(3, {"x": 0.5}, "completed", values=(0.25, 1.5), metrics={"m": 1.0})
    line = record.to_json()
    assert line["values"] == [0.25, 1.5] and math.isnan(TrialRecord.from_json(line).objective)
    assert TrialRecord.from_json(json.loads(json.dumps(line))) == record
    assert "values" not in TrialRecord(4, {"x": 0.5}, "completed", objective=1.0).to_json()  # one objective: unchanged
    assert record.ok and not TrialRecord(5, {}, "completed", values=(math.nan, 1.0)).ok


def test_the_worker_reads_the_objectives_into_their_own_field():
    from daskhpo.engine import TrialTask, run_trial
    from daskhpo.objectives import ObjectiveVector

    def constrained(x, y):
        return {**tradeoff(x, y), "constraints": [x - 0.8]}

    fn = ObjectiveVector(constrained, list(OBJECTIVES))
    record = run_trial(fn, TrialTask(0, {"x": 0.5, "y": 0.25}, "k"), {}).record
    assert record.status == "completed" and math.isnan(record.objective)
    assert record.values == (0.5, 0.5) and record.constraints == (-0.30000000000000004,)
    assert record.metrics == {"memory": 3.0}  # neither the objectives nor any objective_<name> key
    # what the worker got from the wrapper is checked as any result: a metric named like a parameter
    clash = run_trial(ObjectiveVector(lambda x, y: {**tradeoff(x, y), "x": 1.0}, list(OBJECTIVES)),
                      TrialTask(1, {"x": 0.5, "y": 0.25}, "k"), {}).record
    assert clash.status == "broken" and "has the name of a parameter" in clash.error and clash.values == ()


def test_infeasible_trials_leave_the_front_and_are_penalized_in_every_objective():
    def constrained(x, y):
        return {**tradeoff(x, y), "constraints": [x - 0.8]}  # feasible for x <= 0.8

    exp = daskhpo.build_experiment("mo", SPACE, objectives=OBJECTIVES, seed=4)
    exp.run(FakeExecutor(constrained, slots=2), max_trials=40)
    front = exp.pareto_front
    assert front and all(f["params"]["x"] <= 0.8 for f in front)
    assert any(r.params["x"] > 0.8 for r in exp.records())  # some were infeasible
    told_as = {t.id: t for t in exp.trials}  # what the optimizer was told
    worst = np.full(2, -np.inf)
    for record in sorted(exp.records(), key=lambda r: r.seq):  # in the order they were told
        assert told_as[record.trial].constraints == record.constraints
        told = np.array(told_as[record.trial].values)
        if record.feasible:
            np.testing.assert_allclose(told, np.multiply(record.values, [1, -1]))
            worst = np.maximum(worst, told)
        else:  # worse than every trial told before, in each objective
            assert np.all(told > worst)


# -- the algorithms ----------------------------------------------------------------------------------


def zdt1(**params):
    x = np.array([params[f"x{i}"] for i in range(6)])
    g = 1 + 9 * x[1:].mean()
    return {"f1": float(x[0]), "f2": float(g * (1 - np.sqrt(x[0] / g)))}


@pytest.mark.parametrize("algorithm", ["evolution", "parego", "motpe", "auto"])
def test_multi_objective_algorithms_beat_random_search_on_zdt1(algorithm):
    """Hypervolume of 120 trials, 4 in flight, 2 seeds each: the search must beat random draws."""
    space = {f"x{i}": "uniform(0, 1)" for i in range(6)}
    objectives = {"f1": "minimize", "f2": "minimize"}

    def hv(algo, seed):
        exp = daskhpo.build_experiment("z", space, algorithm=algo, objectives=objectives, seed=seed)
        exp.run(FakeExecutor(zdt1, slots=4, duration=lambda p: 0.5 + p["x1"]), max_trials=120)
        return hypervolume([list(f["values"].values()) for f in exp.pareto_front], [1.1, 11])

    for seed in (0, 1):
        assert hv(algorithm, seed) > hv("random", seed) + 0.2


@pytest.mark.parametrize("algorithm", ["random", "evolution", ("parego", {"sampler": "tpe"})])
def test_each_algorithm_through_a_dask_cluster(client, algorithm):
    exp = daskhpo.build_experiment("dask", SPACE, algorithm=algorithm, objectives=OBJECTIVES, seed=5)
    exp.workon(tradeoff, max_trials=16, client=client)
    records = exp.records()
    assert len(records) == 16 and all(r.status == "completed" and len(r.values) == 2 for r in records)
    assert [f["trial"] for f in exp.pareto_front] == brute_front(exp.history)


def test_nsga2_mode_keeps_the_best_fronts():
    """Survival in the NSGA-II mode is elitist: the population keeps the first fronts (an aging
    population would keep the latest trials)."""
    opt = make_optimizer(("evolution", {"population_size": 4, "tournament_size": 2}), daskhpo.Space(SPACE), 0)
    # four good trials first, then six dominated ones
    values = [(0.0, 1.0), (1.0, 0.0), (0.5, 0.5), (0.2, 0.7)] + [(2.0 + i, 2.0 + i) for i in range(6)]
    for i, v in enumerate(values):
        opt.tell(Trial(i, {"x": i / 10, "y": 0.5}, "completed", math.nan, values=v))
    assert sorted(p["x"] for p in opt.population) == [0.0, 0.1, 0.2, 0.3]


def test_parego_draws_a_weight_per_suggestion_and_is_reproducible():
    space = daskhpo.Space(SPACE)
    opt = make_optimizer("parego", space, 3)
    w = [opt.weights(i, 2) for i in range(5)]
    assert all(x.sum() == pytest.approx(1) and np.all(x >= 0) for x in w) and len({tuple(x) for x in w}) == 5
    scores = opt.scalarize(np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]), np.array([0.5, 0.5]))
    assert scores[2] > max(scores[:2])  # the dominated point scores worst
    with pytest.raises(ValueError, match="parego option 'sampler'"):
        make_optimizer(("parego", {"sampler": "random"}), space, 0)
    with pytest.raises(ValueError, match="parego option 'sampler_config'"):
        make_optimizer(("parego", {"sampler_config": {"bogus": 1}}), space, 0)


# -- plots, dashboard, CLI, progress ------------------------------------------------------------------


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    path = tmp_path_factory.mktemp("mo") / "mo.nc"
    exp = daskhpo.build_experiment("mo", SPACE, objectives=OBJECTIVES, seed=6, storage=path)
    exp.run(FakeExecutor(tradeoff, slots=2), max_trials=30)
    exp.close()
    return path


def test_pareto_plot_of_two_objectives(stored):
    exp = daskhpo.load_experiment(stored)
    fig = exp.plot.pareto()
    trials = fig.select_one({"name": "trials"}).data
    front = fig.select_one({"name": "front"}).data
    assert sorted(front["trial"]) == [f["trial"] for f in exp.pareto_front]
    assert np.all(np.diff(front["error"]) >= 0)  # sorted along the first objective
    np.testing.assert_allclose(trials["speed"], exp.history.objective_speed.values)
    assert fig.select_one({"name": "front_line"}) is not None
    with pytest.raises(ValueError, match=r"regret\(\) plots one objective.*use pareto\(\)"):
        exp.plot.regret()
    single = daskhpo.build_experiment("one", SPACE, seed=0)
    single.run(FakeExecutor(lambda x, y: x + y), max_trials=3)
    with pytest.raises(ValueError, match="pareto\\(\\) needs a history with several objectives"):
        single.plot.pareto()


def test_pareto_plot_of_three_objectives_has_a_panel_per_pair():
    three = {"a": "minimize", "b": "minimize", "c": "maximize"}
    exp = daskhpo.build_experiment("three", SPACE, objectives=three, seed=0)
    exp.run(FakeExecutor(lambda x, y: {"a": x, "b": 1 - x + y, "c": y}), max_trials=20)
    grid = plot.pareto(exp.history)
    figures = [f for f in grid.select({"type": __import__("bokeh.plotting", fromlist=["figure"]).figure})]
    assert sorted((f.xaxis[0].axis_label, f.yaxis[0].axis_label) for f in figures) == [("a", "b"), ("a", "c"), ("b", "c")]
    front = grid.select_one({"name": "front"}).data
    assert sorted(front["trial"]) == [f["trial"] for f in exp.pareto_front]


def test_dashboard_shows_the_front_and_its_size(stored):
    exp = daskhpo.load_experiment(stored)
    feed = TrialFeed(exp.records()[:20])
    _, info = make_app("mo", exp.space, feed, objectives=exp.objectives)
    session = _Session(info, Document())
    partial = daskhpo.load_experiment(stored)
    first20 = brute_front(partial.history.isel(trial=slice(0, 20)))
    assert sorted(session.pareto_front.data["trial"]) == first20
    assert f'daskhpo-front">{len(first20)}</b>' in session.summary.text
    feed.extend(exp.records()[20:])
    session.last_stream = -math.inf
    session.update()
    assert sorted(session.pareto_front.data["trial"]) == [f["trial"] for f in exp.pareto_front]
    assert len(session.pareto_points.data["trial"]) == 30
    table = session.table.data  # the table shows each objective's value
    np.testing.assert_allclose(table["o_speed"], [r.values[1] for r in exp.records()])
    assert "objective" not in table


def test_cli_status_and_progress_show_the_front(stored, capsys):
    assert main(["status", str(stored)]) == 0
    out = capsys.readouterr().out
    front = daskhpo.load_experiment(stored).pareto_front
    assert f"Pareto front: {len(front)} trial(s) of objectives error (minimize), speed (maximize)" in out
    header = [line.split() for line in out.splitlines() if line.strip().startswith("trial")]
    assert header and header[0][:4] == ["trial", "status", "error", "speed"]
    out = stored.parent / "front.html"
    assert main(["plot", "pareto", str(stored), "-o", str(out)]) == 0 and "Pareto front" in out.read_text()
    assert main(["plot", "regret", str(stored)]) == 2  # a usage error that points to pareto
    assert "use pareto()" in capsys.readouterr().err
    text = io.StringIO()
    bar = ProgressBar(30, objectives=OBJECTIVES, file=text, mininterval=0)
    for record in daskhpo.load_experiment(stored).records():
        bar(record)
    bar.close()
    assert f"front={len(front)}" in text.getvalue()


def test_warm_start_between_experiments_with_the_same_objectives(tmp_path):
    first = daskhpo.build_experiment("a", SPACE, objectives=OBJECTIVES, seed=0, storage=tmp_path / "a.nc")
    first.run(FakeExecutor(tradeoff), max_trials=12)
    first.close()
    second = daskhpo.build_experiment("b", SPACE, algorithm="evolution", objectives=OBJECTIVES, seed=0,
                                      warm_start=tmp_path / "a.nc")
    assert len(second.optimizer.population) == 10  # told the 12 completed trials: a full population
    with pytest.raises(ValueError, match="has objectives .*'error'.*this experiment one"):
        daskhpo.build_experiment("c", SPACE, warm_start=tmp_path / "a.nc")
