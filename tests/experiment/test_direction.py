"""``direction="maximize"``: optimizers minimize the negated value; everything shown is the user's."""

from __future__ import annotations

import numpy as np
import pytest
from bokeh.document import Document

import daskhpo
from daskhpo.engine import FakeExecutor
from daskhpo.optimizers.random import RandomSearch
from daskhpo.records import TrialRecord
from daskhpo.viz import plot
from daskhpo.viz.dashboard import TrialFeed, _Session, make_app

SPACE = {"x": "uniform(0, 1)"}


def peak(x):
    return 1.0 - (x - 0.7) ** 2  # the maximum, 1, is at x = 0.7


def test_direction_is_checked_and_named():
    with pytest.raises(ValueError, match="direction"):
        daskhpo.build_experiment("d", SPACE, direction="max")
    with pytest.raises(ValueError, match="direction"):
        daskhpo.build_experiment("d", SPACE, direction=1)
    exp = daskhpo.build_experiment("d", SPACE, seed=0)
    assert exp.direction == "minimize" and exp.history.attrs["direction"] == "minimize"


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_tpe_follows_the_direction(direction):
    exp = daskhpo.build_experiment("tpe", SPACE, algorithm=("tpe", {"n_initial": 8}), seed=3, direction=direction)
    exp.run(FakeExecutor(peak, slots=2), max_trials=40)
    ds = exp.history
    assert ds.attrs["direction"] == direction
    x = ds["x"].values
    later = x[20:]
    if direction == "maximize":
        assert exp.best["objective"] == float(ds["objective"].max())
        assert abs(exp.best["params"]["x"] - 0.7) < 0.05
        assert np.median(np.abs(later - 0.7)) < 0.15  # the model searches near the peak
    else:
        assert exp.best["objective"] == float(ds["objective"].min())
        assert exp.best["params"]["x"] < 0.1  # the farthest point from the peak
    # The history holds the objective's own values, never the negated ones.
    np.testing.assert_allclose(ds["objective"].values, peak(x))


def learning(x):
    # An accuracy that grows with the steps; configurations with a larger x are better.
    for step in range(1, 10):
        daskhpo.report(step, objective=x * (1 - 1 / (step + 1)))
    return x * 0.9


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_asha_prunes_the_worse_side(direction):
    exp = daskhpo.build_experiment(
        "asha", SPACE, seed=0, direction=direction,
        algorithm=("asha", {"min_resource": 1, "max_resource": 9, "reduction_factor": 3}))
    exp.run(FakeExecutor(learning, slots=1), max_trials=40)
    ds = exp.history
    status = ds["status"].values.astype(str)
    x = ds["x"].values
    assert {"pruned", "completed"} <= set(status)
    kept, pruned = x[status == "completed"].mean(), x[status == "pruned"].mean()
    assert (kept > pruned) if direction == "maximize" else (kept < pruned)


def test_resume_keeps_the_direction_and_refuses_the_other(tmp_path):
    path = tmp_path / "max.nc"
    first = daskhpo.build_experiment("max", SPACE, algorithm="tpe", storage=path, seed=1, direction="maximize")
    first.run(FakeExecutor(peak), max_trials=6)
    first.close()
    with pytest.raises(ValueError, match="direction='minimize'.*maximizes"):
        daskhpo.build_experiment("max", SPACE, storage=path, direction="minimize")
    recording = Recording(daskhpo.Space(SPACE), seed=1)
    again = daskhpo.build_experiment("max", SPACE, algorithm=recording, storage=path)
    assert again.direction == "maximize" and again.attrs["direction"] == "maximize"
    # The replayed optimizer was told the negated values, like the live one.
    stored = first.history["objective"].values
    np.testing.assert_allclose(recording.told, -stored)
    again.run(FakeExecutor(peak), max_trials=8)
    np.testing.assert_allclose(recording.told, -again.history["objective"].values[np.argsort(again.history["order"].values)])
    assert again.best["objective"] == float(again.history["objective"].max())
    again.close()
    assert daskhpo.load_experiment(path).direction == "maximize"


class Recording(RandomSearch):
    """Random search that keeps the objectives it is told."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.told = []

    def tell(self, trial):
        self.told.append(trial.objective)
        super().tell(trial)


def test_regret_best_line_is_a_running_max_when_maximizing():
    exp = daskhpo.build_experiment("r", SPACE, seed=2, direction="maximize")
    exp.run(FakeExecutor(peak), max_trials=12)
    figure = plot.regret(exp)
    best = figure.select_one({"name": "best"}).data
    trials = figure.select_one({"name": "trials"}).data
    order = np.argsort(trials["trial"])
    np.testing.assert_allclose(best["best"], np.maximum.accumulate(np.asarray(trials["objective"])[order]))
    assert best["best"][-1] == exp.best["objective"]
    # The same from the stored dataset alone (its attrs carry the direction).
    again = plot.regret(exp.history).select_one({"name": "best"}).data
    np.testing.assert_allclose(again["best"], best["best"])


@pytest.mark.parametrize("direction, expected", [("maximize", 5.0), ("minimize", 1.0)])
def test_dashboard_best_so_far_follows_the_direction(direction, expected):
    feed = TrialFeed()
    for i, value in enumerate([3.0, 1.0, 5.0, 2.0]):
        feed.add(TrialRecord(i, {"x": 0.1 * i}, "completed", objective=value, started=0.0, ended=1.0, submitted=0.0))
    _, info = make_app("d", daskhpo.Space(SPACE), feed, direction=direction)
    session = _Session(info, Document())
    assert session.best["objective"] == expected
    running = (np.maximum if direction == "maximize" else np.minimum).accumulate([3.0, 1.0, 5.0, 2.0])
    np.testing.assert_allclose(session.best_line.data["best"], running)
