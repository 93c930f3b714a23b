"""Plots: the data behind each one matches the history."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from bokeh.models import ColumnDataSource, LogScale
from bokeh.plotting import figure

import daskhpo
from daskhpo.space import Space
from daskhpo.viz import plot
from tests.helpers_browser import Page, launch_browser
from tests.helpers_plot import SPACE, make_experiment


@pytest.fixture(scope="module")
def experiment():
    return make_experiment(80, broken_every=10)


@pytest.fixture(scope="module")
def completed(experiment):
    ds = experiment.history
    return ds.where(ds.status == "completed", drop=True)


def source(obj, name):
    found = list(obj.select({"name": name, "type": ColumnDataSource}))
    assert found, f"no source named {name!r}"
    return found[0]


def test_regret_sources_hold_the_completed_trials_and_their_running_minimum(experiment, completed):
    layout = experiment.plot.regret()
    trials = source(layout, "trials").data
    np.testing.assert_array_equal(trials["trial"], completed.trial.values)
    np.testing.assert_allclose(trials["objective"], completed.objective.values)
    best = source(layout, "best").data
    np.testing.assert_allclose(best["best"], np.minimum.accumulate(completed.objective.values))
    assert best["best"][-1] == pytest.approx(experiment.best["objective"])
    # against wall time: seconds since the first submission, trials by end time
    best_time = source(layout, "best_time").data
    assert np.all(np.diff(best_time["elapsed"]) >= 0)
    assert best_time["elapsed"][0] == pytest.approx(1.0)  # first trial ends 1 s after its submission
    assert np.all(np.diff(best_time["best"]) <= 0)


def test_regret_without_completed_trials_says_so():
    ds = make_experiment(3, broken_every=1).history
    with pytest.raises(ValueError, match="at least 1 completed trial.*has 0 of 3"):
        plot.regret(ds)


def test_partial_dependencies_find_the_shape_of_the_objective(experiment, completed):
    grid = experiment.plot.partial_dependencies(n_grid=15)
    x = source(grid, "pd_x").data
    positions = np.asarray(x["position"])
    assert len(positions) == 15 and positions[0] == -2 and positions[-1] == 2
    # objective (x - 0.5)^2 + ...: the minimum of the partial dependence is near 0.5,
    # and it varies far more along x than along depth, which the objective ignores
    assert abs(positions[np.argmin(x["pd"])] - 0.5) < 0.6
    depth = source(grid, "pd_depth").data
    assert list(depth["position"]) == list(range(1, 9))  # integers, both bounds included
    assert np.ptp(x["pd"]) > 10 * np.ptp(depth["pd"])
    # categorical: its choices, in order, at positions 0, 1, 2
    kind = source(grid, "pd_kind").data
    assert list(kind["value"]) == ["relu", "None", "3"] and list(kind["position"]) == [0, 1, 2]
    # pair maps: n_grid x n_grid cells; log parameters on log axes with log-spaced cells
    cells = source(grid, "pd_lr__x").data
    assert len(cells["pd"]) == 15 * 15
    lr_edges = np.unique(np.round(np.log10(cells["left"]), 9))
    assert np.allclose(np.diff(lr_edges), np.diff(lr_edges)[0])
    assert cells["left"].min() < 1e-4 < cells["right"].min() and cells["right"].max() > 1
    figures = {fig.xaxis[0].axis_label: fig for fig in grid.select({"type": figure}) if fig.renderers}
    assert isinstance(figures["lr"].x_scale, LogScale)
    assert not isinstance(figures["x"].x_scale, LogScale)
    # the trials are overlaid: one dot per completed trial in every panel
    for overlay in grid.select({"name": "trials", "type": ColumnDataSource}):
        np.testing.assert_array_equal(overlay.data["trial"], completed.trial.values)


def test_partial_dependencies_of_chosen_params_and_errors(experiment):
    grid = experiment.plot.partial_dependencies(params=["x", "lr"], n_grid=5)
    names = {s.name for s in grid.select({"type": ColumnDataSource})}
    assert {"pd_x", "pd_lr", "pd_x__lr"} <= names and "pd_depth" not in names
    with pytest.raises(ValueError, match="unknown parameter.*'nope'"):
        experiment.plot.partial_dependencies(params=["nope"])
    with pytest.raises(ValueError, match="n_grid"):
        experiment.plot.partial_dependencies(n_grid=1)


def test_parallel_coordinates_draw_one_line_per_completed_trial(experiment, completed):
    fig = experiment.plot.parallel_coordinates()
    lines = source(fig, "lines").data
    np.testing.assert_array_equal(lines["trial"], completed.trial.values)
    space = Space(SPACE)
    k = 3
    record = [r for r in experiment.records() if r.status == "completed"][k]
    assert record.trial == lines["trial"][k]
    expected = [space[n].to_unit(record.params[n]) for n in space]
    np.testing.assert_allclose(lines["ys"][k][:-1], expected)
    assert lines["ys"][k][-1] == pytest.approx(completed.objective.values[k])  # raw; scaled in the browser
    texts = set(source(fig, "labels").data["text"])
    assert {"relu", "None", "3", "0.0001", "1"} <= texts
    assert fig.xaxis[0].major_label_overrides[0] == "lr (log)"
    assert fig.xaxis[0].major_label_overrides[len(space)] == "objective"


def test_importance_ranks_the_parameter_that_matters_and_names_its_method(experiment):
    for method, words in (("permutation", "permutation"), ("variance", "variance")):
        fig = experiment.plot.importance(method=method)
        data = source(fig, "importance").data
        assert data["param"][-1] == "x"  # drawn on top: the most important
        scores = dict(zip(data["param"], data["importance"]))
        assert scores["x"] > 5 * max(abs(scores["depth"]), 1e-9)
        assert words in fig.title.text
    with pytest.raises(ValueError, match="unknown importance method"):
        experiment.plot.importance(method="shap")


def test_timeline_has_a_bar_per_trial_on_its_worker(experiment):
    ds = experiment.history
    fig = experiment.plot.timeline()
    bars = source(fig, "bars").data
    np.testing.assert_array_equal(bars["trial"], ds.trial.values)
    assert list(bars["status"]) == list(ds.status.values)
    started_ms = ds.started.values.astype("datetime64[ns]").astype("int64") / 1e6
    np.testing.assert_allclose(bars["start"], started_ms)
    np.testing.assert_allclose(np.asarray(bars["end"]) - np.asarray(bars["start"]), 900, atol=1e-3)
    broken = [c for c, s in zip(bars["color"], bars["status"]) if s == "broken"]
    assert broken and set(broken) == {plot.STATUS_COLORS["broken"]}
    assert list(fig.y_range.factors) == sorted(set(ds.worker.values))


def _with_reported(ds: xr.Dataset) -> xr.Dataset:
    """The layout of intermediate results: reported_<metric> with dims (trial, step)."""
    steps = np.array([1, 2, 4, 8])
    values = np.full((ds.sizes["trial"], len(steps)), np.nan)
    values[0] = [4.0, 3.0, 2.0, 1.0]
    values[1, :2] = [5.0, 4.5]  # stopped early
    values[2, [0, 2]] = [3.0, 2.5]  # a missing step
    return ds.assign(reported_objective=(("trial", "step"), values)).assign_coords(step=steps)


def test_intermediate_draws_learning_curves_from_reported_steps(experiment):
    ds = _with_reported(experiment.history)
    fig = plot.intermediate(ds)
    curves = source(fig, "curves").data
    assert list(curves["trial"]) == [0, 1, 2]  # trials without reports have no curve
    assert list(curves["xs"][0]) == [1, 2, 4, 8] and list(curves["ys"][0]) == [4.0, 3.0, 2.0, 1.0]
    assert list(curves["xs"][1]) == [1, 2] and list(curves["ys"][2]) == [3.0, 2.5]
    assert list(curves["last"]) == [1.0, 4.5, 2.5]


def test_intermediate_without_reports_explains(experiment):
    with pytest.raises(ValueError, match="no intermediate results for metric 'objective'.*reported_<metric>"):
        experiment.plot.intermediate()
    ds = _with_reported(experiment.history)
    with pytest.raises(ValueError, match=r"for metric 'loss'.*\['objective'\]"):
        plot.intermediate(ds, "loss")


def test_plots_of_a_loaded_experiment_match_and_save_to_standalone_html(tmp_path):
    path = tmp_path / "exp.nc"
    original = make_experiment(40, path=path, broken_every=7)
    loaded = daskhpo.load_experiment(path)
    a = source(original.plot.regret(), "trials").data
    b = source(loaded.plot.regret(), "trials").data
    np.testing.assert_array_equal(a["trial"], b["trial"])
    np.testing.assert_allclose(a["objective"], b["objective"])
    assert Space(json.loads(loaded.history.attrs["space"])) == Space(SPACE)
    out = loaded.plot.save(loaded.plot.parallel_coordinates(), tmp_path / "pc.html")
    with open(out, encoding="utf-8") as fh:
        text = fh.read()
    assert "Parallel coordinates" in text and "Bokeh" in text and "cdn.bokeh.org" not in text


def test_saved_plots_render_in_a_browser_without_errors(experiment, tmp_path):
    ds = _with_reported(experiment.history)
    files = {
        "regret": experiment.plot.regret(),
        "pd": experiment.plot.partial_dependencies(params=["lr", "kind", "x"], n_grid=8),
        "pc": experiment.plot.parallel_coordinates(),
        "importance": experiment.plot.importance(method="variance"),
        "timeline": experiment.plot.timeline(),
        "intermediate": plot.intermediate(ds),
    }
    for browser in launch_browser():
        page = Page(browser, 1100, 900)
        try:
            for name, obj in files.items():
                path = plot.save_html(obj, tmp_path / f"{name}.html")
                page.open(f"file://{path}")
                assert page.page.locator("canvas").count() >= 1, name
                if name == "pc":
                    # the browser scales the objective axis (the last point of each line)
                    # from the minimum to the maximum objective; the parameters stay as sent
                    page.settle()
                    drawn = np.array(page.drawn_column("parcoords_lines", "ys"))
                    sent = np.array(source(obj, "lines").data["ys"])
                    objective = sent[:, -1]
                    expected = (objective - objective.min()) / (objective.max() - objective.min())
                    np.testing.assert_allclose(drawn[:, -1], expected)
                    np.testing.assert_allclose(drawn[:, :-1], sent[:, :-1])
            page.page.screenshot(path=str(tmp_path / "intermediate.png"))
        finally:
            page.close()
        assert page.errors == []
    assert (tmp_path / "intermediate.png").stat().st_size > 5000


def _spanning(objectives):
    """Records of make_records with these objectives (0.19 to 823 in a real run)."""
    import dataclasses

    from tests.helpers_plot import make_records

    records = make_records(len(objectives))
    return [dataclasses.replace(r, status="completed", objective=float(v), error=None)
            for r, v in zip(records, objectives)]


@pytest.mark.parametrize("objectives, log", [
    ([823.0, 41.0, 5.2, 0.9, 0.19, 0.3, 12.0], True),  # positive, over three orders of magnitude
    ([5.0, 4.1, 3.2, 2.9, 3.3], False),                # one order: linear reads best
    ([-3.0, 823.0, 0.19], False),                      # not all positive: no log axis
])
def test_regret_axis_is_log_when_objectives_span_orders_of_magnitude(objectives, log):
    from bokeh.models import LogScale

    from daskhpo.experiment import Experiment
    from daskhpo.store.history import History
    from tests.helpers_plot import SPACE

    space = daskhpo.Space(SPACE)
    attrs = {"name": "span", "space": json.dumps(space.to_dict()), "algorithm": "random", "algorithm_config": "{}",
             "seed": 0, "daskhpo_version": "test"}
    experiment = Experiment("span", space, None, History(space, attrs, None, _spanning(objectives)))
    figures = experiment.plot.regret().children
    assert [isinstance(f.y_scale, LogScale) for f in figures] == [log, log]
    assert all(isinstance(f.y_scale, LogScale) for f in experiment.plot.regret(log_y=True).children)
    assert not any(isinstance(f.y_scale, LogScale) for f in experiment.plot.regret(log_y=False).children)
