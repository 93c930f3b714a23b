"""Plots of an experiment's history, as Bokeh objects.

Every function takes the history (an :class:`xarray.Dataset` as returned by
``experiment.history``, or an :class:`~daskhpo.Experiment`) and returns a Bokeh layout
that can be shown (:func:`bokeh.io.show`), embedded, or written to a standalone HTML file
with :func:`save_html`.  The same functions are reachable from an experiment, live or
loaded::

    experiment.plot.regret()
    daskhpo.load_experiment("exp.nc").plot.partial_dependencies(n_grid=30)

Sources and renderers carry names (``"trials"``, ``"best"``, ...) so that the data behind
a plot can be found with ``layout.select(name=...)``.

Conventions: only *completed* trials (finite objective) enter the objective plots; the
objective is minimized; parameters with a log prior (``loguniform``, ``fidelity``) are
drawn on log axes, categorical ones on axes labelled with their choices.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from bokeh.layouts import gridplot, row
from bokeh.models import (
    BasicTicker,
    ColorBar,
    ColumnDataSource,
    CustomJSTransform,
    DataRange1d,
    FactorRange,
    FixedTicker,
    HoverTool,
    Legend,
    LinearColorMapper,
    Range1d,
    Whisker,
)
from bokeh.palettes import Viridis256
from bokeh.plotting import figure
from bokeh.transform import transform

from ..objectives import objectives_from_attrs, signs, variable
from ..pareto import non_dominated
from ..records import TrialRecord
from ..space import Categorical, Dimension, Fidelity, Space
from ._notebook import in_notebook

if TYPE_CHECKING:
    from bokeh.model import Model

    from ..experiment import Experiment

__all__ = [
    "PlotAccessor",
    "regret",
    "partial_dependencies",
    "parallel_coordinates",
    "importance",
    "timeline",
    "intermediate",
    "pareto",
    "save_html",
    "STATUS_COLORS",
]

logger = logging.getLogger(__name__)

#: colour of each trial status in the timeline, the dashboard and the learning curves
STATUS_COLORS = {
    "completed": "#2ca02c",
    "broken": "#d62728",
    "timeout": "#ff7f0e",
    "lost": "#7f7f7f",
    "pruned": "#9467bd",
    "running": "#1f77b4",
}
_OTHER_COLOR = "#8c564b"

_TOOLS = "pan,wheel_zoom,box_zoom,reset,save"


# -- reading the history ----------------------------------------------------------------------


def _resolve(history: xr.Dataset | Experiment) -> tuple[xr.Dataset, Space]:
    """The dataset and the space of an experiment or of a history dataset."""
    if isinstance(history, xr.Dataset):
        if "space" not in history.attrs:
            raise ValueError("this dataset has no 'space' attr; is it a daskhpo history?")
        return history, Space(json.loads(history.attrs["space"]))
    if hasattr(history, "history") and hasattr(history, "space"):
        return history.history, history.space
    raise TypeError(f"expected an xarray.Dataset or an Experiment, got {type(history).__name__}")


def _decode(dim: Dimension, raw: np.ndarray) -> list:
    """Python values of one parameter column."""
    if dim.dtype == "repr":
        return [ast.literal_eval(str(v)) for v in raw]
    return [v.item() if isinstance(v, np.generic) else v for v in raw]


def is_log(dim: Dimension) -> bool:
    """Whether a dimension is searched (and drawn) on a log scale."""
    return isinstance(dim, Fidelity) or bool(getattr(dim, "is_log", False))


def direction(history: xr.Dataset | Experiment) -> str:
    """``"minimize"`` or ``"maximize"``: the ``direction`` attr of a history (default minimize)."""
    ds = history if isinstance(history, xr.Dataset) else history.history
    return "maximize" if ds.attrs.get("direction") == "maximize" else "minimize"


def best_so_far(values: np.ndarray, direction: str = "minimize") -> np.ndarray:
    """The running best of ``values``: a running minimum, or maximum for ``"maximize"``."""
    values = np.asarray(values, dtype=float)
    return (np.maximum if direction == "maximize" else np.minimum).accumulate(values)


def _completed(ds: xr.Dataset) -> np.ndarray:
    status = ds["status"].values.astype(str)
    objective = ds["objective"].values.astype(float)
    return (status == "completed") & np.isfinite(objective)


def _need_completed(ds: xr.Dataset, minimum: int, what: str) -> np.ndarray:
    objectives = objectives_from_attrs(ds.attrs)
    if objectives:
        raise ValueError(f"{what} plots one objective; this history has objectives {list(objectives)}: "
                         "use pareto() (experiment.plot.pareto())")
    mask = _completed(ds)
    if mask.sum() < minimum:
        raise ValueError(
            f"{what} needs at least {minimum} completed trial(s) with a finite objective; "
            f"the history has {int(mask.sum())} of {ds.sizes.get('trial', 0)} trials"
        )
    return mask


def _unit_matrix(ds: xr.Dataset, space: Space, names: Sequence[str], mask: np.ndarray) -> np.ndarray:
    """Trials (rows where ``mask``) mapped to the unit cube, one column per name."""
    columns = []
    for name in names:
        dim = space[name]
        values = _decode(dim, ds[name].values[mask])
        columns.append([dim.to_unit(v) for v in values])
    return np.array(columns, dtype=float).T.reshape(int(mask.sum()), len(names))


def _ms(values: np.ndarray) -> np.ndarray:
    """datetime64 values as float milliseconds since the epoch (NaN for NaT)."""
    ns = values.astype("datetime64[ns]")
    out = ns.astype("int64").astype(float) / 1e6
    out[np.isnat(ns)] = np.nan
    return out


def label(value: Any) -> str:
    """A short text for a parameter value."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def status_color(status: str) -> str:
    """The colour of a trial status."""
    return STATUS_COLORS.get(status, _OTHER_COLOR)


# -- axes of parameters ------------------------------------------------------------------------


def _unit_span(dim: Dimension) -> tuple[float, float]:
    # A normal prior has no bounds: draw the central 99 % of it.
    return (0.005, 0.995) if getattr(dim, "prior", "") == "normal" else (0.0, 1.0)


def _ticks(dim: Dimension, n: int = 5) -> list[tuple[float, str]]:
    """(unit position, label) of a few values of a dimension, for a parallel axis."""
    if isinstance(dim, Categorical):
        return [(dim.to_unit(c), label(c)) for c in dim.choices]
    if is_log(dim):
        # powers of ten between the bounds, when there are at least two
        low, high = dim.from_unit(0.0), dim.from_unit(1.0)
        decades = [10.0**k for k in range(math.ceil(math.log10(low) - 1e-9), math.floor(math.log10(high) + 1e-9) + 1)]
        if len(decades) >= 2:
            step = max(1, math.ceil(len(decades) / 7))
            return [(dim.to_unit(dim.cast(d)), label(dim.cast(d))) for d in decades[::step]]
    lo, hi = _unit_span(dim)
    ticks, seen = [], set()
    for p in np.linspace(lo, hi, n):
        value = dim.from_unit(float(p))
        text = label(value)
        if text not in seen:
            seen.add(text)
            ticks.append((dim.to_unit(value), text))
    return ticks


def _positions(dim: Dimension, values: Sequence[Any]) -> list:
    """Where values sit on a parameter's axis (categorical choices at 0, 1, 2...)."""
    if isinstance(dim, Categorical):
        return [dim.index(v) for v in values]
    return [float(v) for v in values]


def _style_param_axis(fig: Any, axis: str, dim: Dimension) -> None:
    """Label a categorical parameter's axis with its choices."""
    if not isinstance(dim, Categorical):
        return
    target = fig.xaxis if axis == "x" else fig.yaxis
    positions = list(range(len(dim.choices)))
    target.ticker = FixedTicker(ticks=positions)
    target.major_label_overrides = {p: label(c) for p, c in zip(positions, dim.choices)}
    rng = Range1d(-0.5, len(dim.choices) - 0.5)
    if axis == "x":
        fig.x_range = rng
    else:
        fig.y_range = rng


def _axis_type(dim: Dimension) -> str:
    return "log" if is_log(dim) else "linear"


# -- regret ------------------------------------------------------------------------------------


#: objectives spanning this ratio (largest / smallest, all positive) get a log axis by default
LOG_AXIS_SPAN = 100.0


def wants_log_axis(lo: float, hi: float) -> bool:
    """Whether objectives from ``lo`` to ``hi`` read better on a log axis: all positive and
    spanning two orders of magnitude or more (on a linear axis of 0.19 to 823, the best so
    far lies flat on the axis)."""
    return bool(math.isfinite(lo) and math.isfinite(hi) and lo > 0 and hi / lo >= LOG_AXIS_SPAN)


def set_log_y(fig: Any, log: bool) -> None:
    """Switch a figure's y axis between log and linear (works on a served, live document)."""
    from bokeh.models import (
        BasicTicker,
        BasicTickFormatter,
        LinearScale,
        LogScale,
        LogTicker,
        LogTickFormatter,
    )

    if isinstance(fig.y_scale, LogScale) == log:
        return
    fig.y_scale = LogScale() if log else LinearScale()
    ticker = LogTicker() if log else BasicTicker()
    for axis in fig.left:
        axis.ticker = ticker
        axis.formatter = LogTickFormatter() if log else BasicTickFormatter()
    for grid in fig.ygrid:
        grid.ticker = ticker


def regret(history: xr.Dataset | Experiment, *, log_y: bool | None = None, width: int = 480, height: int = 320) -> Any:
    """Objective of every completed trial and the best so far.

    The best so far is a running minimum, or a running maximum when the history's attr
    ``direction`` is ``"maximize"``.  Two panels: against trial order (the trial id), and
    against wall time (seconds from the
    first submission to each trial's end).

    Parameters
    ----------
    history : xarray.Dataset or Experiment
    log_y : bool, optional
        Draw the objective on a log axis (it must then be positive).  Default: when every
        objective is positive and they span two orders of magnitude or more
        (:func:`wants_log_axis`).
    width, height : int
        Size of each panel in pixels.

    Returns
    -------
    bokeh.models.Row
        Sources named ``"trials"`` (``trial``, ``objective``, ``elapsed``),
        ``"best"`` (``trial``, ``best``) and ``"best_time"`` (``elapsed``, ``best``).

    Raises
    ------
    ValueError
        Without a completed trial.
    """
    ds, _ = _resolve(history)
    mask = _need_completed(ds, 1, "regret()")
    way = direction(ds)
    trial = ds["trial"].values[mask].astype(int)
    objective = ds["objective"].values[mask].astype(float)
    ended = _ms(ds["ended"].values)
    t0 = np.nanmin(_ms(ds["submitted"].values))
    elapsed = (ended[mask] - t0) / 1e3
    by_trial = np.argsort(trial, kind="stable")
    by_time = np.argsort(elapsed, kind="stable")
    trials = ColumnDataSource(
        {"trial": trial, "objective": objective, "elapsed": elapsed}, name="trials"
    )
    best = ColumnDataSource(
        {"trial": trial[by_trial], "best": best_so_far(objective[by_trial], way)}, name="best"
    )
    best_time = ColumnDataSource(
        {"elapsed": elapsed[by_time], "best": best_so_far(objective[by_time], way)}, name="best_time"
    )
    finite = objective[np.isfinite(objective)]
    if log_y is None:
        log_y = finite.size > 0 and wants_log_axis(float(finite.min()), float(finite.max()))
    y_type = "log" if log_y else "linear"
    legend = "bottom_right" if way == "maximize" else "top_right"
    left = regret_figure(trials, best, x="trial", y_axis_type=y_type, width=width, height=height, legend_location=legend)
    right = regret_figure(trials, best_time, x="elapsed", y_axis_type=y_type, width=width, height=height,
                          legend_location=legend)
    return row(left, right, name="regret")


def regret_figure(
    trials: ColumnDataSource,
    best: ColumnDataSource,
    *,
    x: str = "trial",
    xlabel: str | None = None,
    y_axis_type: str = "linear",
    width: int = 480,
    height: int = 320,
    legend_location: str = "top_right",
    **kwargs: Any,
) -> Any:
    """A regret panel drawn from a source of trials and a source of the best so far."""
    xlabel = xlabel or ("trial" if x == "trial" else "wall time (s)")
    fig = figure(
        title=f"Objective by {xlabel}",
        x_axis_label=xlabel,
        y_axis_label="objective",
        y_axis_type=y_axis_type,
        width=width,
        height=height,
        tools=_TOOLS,
        **kwargs,
    )
    points = fig.scatter(x, "objective", source=trials, size=5, alpha=0.5, color="#1f77b4", legend_label="trial")
    fig.step(x, "best", source=best, mode="after", line_width=2, color="#d62728", legend_label="best so far", name="best_line")
    fig.add_tools(HoverTool(renderers=[points], tooltips=[("trial", "@trial"), ("objective", "@objective{0.0000g}")]))
    fig.legend.location = legend_location
    fig.legend.click_policy = "hide"
    return fig


# -- several objectives ------------------------------------------------------------------------


def pareto_columns(ds: xr.Dataset) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The completed (and feasible) trials of a multi-objective history, and which are on the front.

    Returns
    -------
    columns : dict
        ``trial`` and one array per objective, by its name (the values the objective returned).
    front : numpy.ndarray of bool
        Whether each is non-dominated (each objective in its own direction).

    Raises
    ------
    ValueError
        For a history with one objective.
    """
    objectives = objectives_from_attrs(ds.attrs)
    if not objectives:
        raise ValueError("pareto() needs a history with several objectives (build_experiment(..., objectives=...)); "
                         "this one has one: use regret()")
    values = np.column_stack([ds[variable(n)].values.astype(float) for n in objectives]) if ds.sizes.get("trial") else \
        np.zeros((0, len(objectives)))
    mask = (ds["status"].values.astype(str) == "completed") & np.all(np.isfinite(values), axis=1)
    if "feasible" in ds:
        mask &= ds["feasible"].values.astype(bool)
    columns = {"trial": ds["trial"].values[mask].astype(int)}
    columns.update({n: values[mask, i] for i, n in enumerate(objectives)})
    minimized = values[mask] * np.array(signs(objectives))
    front = non_dominated(minimized) if len(minimized) else np.zeros(0, dtype=bool)
    return columns, front


def pareto_figure(
    trials: ColumnDataSource, front: ColumnDataSource, x: str, y: str, *, width: int = 480, height: int = 400, **kwargs: Any
) -> Any:
    """One panel of the Pareto plot: every trial, and the front highlighted (a step line in 2-d)."""
    fig = figure(title=f"{y} against {x}", x_axis_label=x, y_axis_label=y, width=width, height=height, tools=_TOOLS, **kwargs)
    points = fig.scatter(x, y, source=trials, size=5, alpha=0.4, color="#1f77b4", legend_label="trial")
    on_front = fig.scatter(x, y, source=front, size=8, color="#d62728", legend_label="Pareto front", name="front_points")
    fig.add_tools(HoverTool(renderers=[points, on_front], tooltips=[("trial", "@trial"), (x, f"@{{{x}}}{{0.0000g}}"),
                                                                    (y, f"@{{{y}}}{{0.0000g}}")]))
    fig.legend.click_policy = "hide"
    return fig


def pareto(history: xr.Dataset | Experiment, *, width: int = 480, height: int = 400) -> Any:
    """The Pareto front of a history with several objectives, among all completed trials.

    Two objectives: one scatter of every completed (and feasible) trial, the non-dominated
    ones highlighted and joined by the front's staircase.  More: a scatter for every pair
    of objectives (the front is the same set of trials, non-dominated in all objectives).
    Each objective is drawn with the values the objective returned, in its own direction.

    Parameters
    ----------
    history : xarray.Dataset or Experiment
    width, height : int
        Size of each panel in pixels.

    Returns
    -------
    bokeh.models.Model
        A figure (two objectives) or a grid of them; sources named ``"trials"`` (``trial``
        and a column per objective) and ``"front"`` (the same, for the trials on the front,
        sorted by the first objective).

    Raises
    ------
    ValueError
        For a history with one objective, or without a completed trial.
    """
    ds, _ = _resolve(history)
    columns, on_front = pareto_columns(ds)
    names = list(objectives_from_attrs(ds.attrs))
    if len(columns["trial"]) == 0:
        raise ValueError(f"pareto() needs at least 1 completed trial with every objective finite; "
                         f"the history has 0 of {ds.sizes.get('trial', 0)} trials")
    order = np.argsort(columns[names[0]][on_front], kind="stable")
    trials = ColumnDataSource(columns, name="trials")
    front = ColumnDataSource({k: v[on_front][order] for k, v in columns.items()}, name="front")
    if len(names) == 2:
        fig = pareto_figure(trials, front, names[0], names[1], width=width, height=height, name="pareto")
        ways = objectives_from_attrs(ds.attrs)
        # the staircase bounding the region the front dominates: sorted by the first objective,
        # each point's level holds towards its worse side (right when minimized, left when maximized)
        mode = "after" if ways[names[0]] == "minimize" else "before"
        fig.step(names[0], names[1], source=front, mode=mode, color="#d62728", line_width=1.5, name="front_line")
        return fig
    panels = [pareto_figure(trials, front, a, b, width=width, height=height)
              for i, a in enumerate(names) for b in names[i + 1 :]]
    return gridplot(panels, ncols=min(3, len(panels)), toolbar_location="right")


# -- the surrogate -----------------------------------------------------------------------------


def _surrogate(X: np.ndarray, y: np.ndarray, seed: int, n_estimators: int = 100) -> Any:
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=n_estimators, min_samples_leaf=2, random_state=seed, n_jobs=1).fit(X, y)


def _grid(dim: Dimension, n_grid: int) -> tuple[np.ndarray, list]:
    """Unit positions and values of a dimension's grid for partial dependence."""
    if isinstance(dim, Categorical):
        values = list(dim.choices)
    else:
        lo, hi = _unit_span(dim)
        values = []
        for u in np.linspace(lo, hi, n_grid):
            v = dim.from_unit(float(u))
            if v not in values:  # integers repeat
                values.append(v)
    units = np.array([dim.to_unit(v) for v in values], dtype=float)
    order = np.argsort(units, kind="stable")
    return units[order], [values[i] for i in order]


def _edges(dim: Dimension, centres: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Cell edges around grid centres on a parameter's axis."""
    c = np.asarray(centres, dtype=float)
    if isinstance(dim, Categorical):
        return c - 0.5, c + 0.5
    if len(c) == 1:
        return c * 0.9, c * 1.1
    t = np.log(c) if is_log(dim) else c
    mid = (t[1:] + t[:-1]) / 2
    lo = np.concatenate([[t[0] - (mid[0] - t[0])], mid])
    hi = np.concatenate([mid, [t[-1] + (t[-1] - mid[-1])]])
    if is_log(dim):
        return np.exp(lo), np.exp(hi)
    return lo, hi


def _pd(model: Any, X: np.ndarray, features: Sequence[int], grids: Sequence[np.ndarray]) -> np.ndarray:
    """Partial dependence of the surrogate on ``features`` over their unit grids."""
    from sklearn.inspection import partial_dependence

    result = partial_dependence(
        model,
        X,
        features=list(features),
        custom_values={f: g for f, g in zip(features, grids)},
        method="recursion",
        kind="average",
    )
    return np.asarray(result["average"][0], dtype=float)


def partial_dependencies(
    history: xr.Dataset | Experiment,
    params: Sequence[str] | None = None,
    n_grid: int = 20,
    *,
    seed: int = 0,
    size: int = 220,
) -> Any:
    """Predicted objective as a function of each parameter, and of each pair.

    A random-forest surrogate (:class:`sklearn.ensemble.RandomForestRegressor`) is fitted
    on the completed trials, every parameter mapped to the unit interval of its prior (so a
    log prior is modelled on the log scale).  The partial dependence on a parameter is the
    surrogate's prediction averaged over the other parameters of the trials (Friedman's
    partial dependence, computed exactly on the trees by
    :func:`sklearn.inspection.partial_dependence`).  The result is a matrix as in
    scikit-optimize's ``plot_objective``: one-parameter curves on the diagonal (trials in
    grey), two-parameter maps below it (trials as dots).

    Parameters
    ----------
    history : xarray.Dataset or Experiment
    params : sequence of str, optional
        Parameters to show (default: all).
    n_grid : int, default 20
        Grid points per numeric parameter (categorical ones use their choices).
    seed : int, default 0
        Seed of the surrogate.
    size : int, default 220
        Side of each panel in pixels.

    Returns
    -------
    bokeh.models.GridPlot
        Diagonal panels hold a source named ``"pd_<param>"`` (``value``, ``position``,
        ``pd``); lower panels ``"pd_<x>__<y>"`` (cell ``left``, ``right``, ``bottom``,
        ``top`` and ``pd``); the trials' source in each panel is named ``"trials"``.

    Raises
    ------
    ValueError
        For unknown parameters, ``n_grid < 2``, or fewer than 3 completed trials.
    """
    ds, space = _resolve(history)
    names = list(space) if params is None else list(params)
    unknown = [p for p in names if p not in space]
    if unknown or not names:
        raise ValueError(f"unknown parameter(s) {unknown}; the space has {list(space)}")
    if not isinstance(n_grid, int) or n_grid < 2:
        raise ValueError(f"n_grid must be an integer >= 2, got {n_grid!r}")
    mask = _need_completed(ds, 3, "partial_dependencies()")
    all_names = list(space)
    X = _unit_matrix(ds, space, all_names, mask)
    y = ds["objective"].values[mask].astype(float)
    model = _surrogate(X, y, seed)
    index = {n: all_names.index(n) for n in names}
    grids = {n: _grid(space[n], n_grid) for n in names}
    trial_values = {n: _decode(space[n], ds[n].values[mask]) for n in names}
    trial_ids = ds["trial"].values[mask].astype(int)

    one_d = {n: _pd(model, X, [index[n]], [grids[n][0]]) for n in names}
    two_d = {}
    for i, ny in enumerate(names):
        for nx in names[:i]:
            two_d[nx, ny] = _pd(model, X, [index[nx], index[ny]], [grids[nx][0], grids[ny][0]])
    lows = [v.min() for v in [*one_d.values(), *two_d.values()]]
    highs = [v.max() for v in [*one_d.values(), *two_d.values()]]
    mapper = LinearColorMapper(palette=Viridis256, low=float(min(lows)), high=float(max(highs)))

    panels: list[list[Any]] = [[None] * len(names) for _ in names]
    for i, name in enumerate(names):
        dim = space[name]
        values = grids[name][1]
        source = ColumnDataSource(
            {"value": [label(v) for v in values], "position": _positions(dim, values), "pd": one_d[name]},
            name=f"pd_{name}",
        )
        fig = figure(
            width=size, height=size, tools=_TOOLS, x_axis_type=_axis_type(dim),
            x_axis_label=name, y_axis_label="partial dependence",
        )
        observed = ColumnDataSource(
            {"x": _positions(dim, trial_values[name]), "objective": y, "trial": trial_ids}, name="trials"
        )
        fig.scatter("x", "objective", source=observed, size=3, color="#999999", alpha=0.4)
        line = fig.line("position", "pd", source=source, line_width=2, color="#1f77b4")
        fig.scatter("position", "pd", source=source, size=4, color="#1f77b4")
        fig.y_range = DataRange1d(renderers=[line])
        fig.add_tools(HoverTool(renderers=[line], tooltips=[(name, "@value"), ("partial dependence", "@pd{0.0000g}")]))
        _style_param_axis(fig, "x", dim)
        panels[i][i] = fig
        for j, other in enumerate(names[:i]):
            panels[i][j] = _pd_map(space, other, name, grids, two_d[other, name], trial_values, trial_ids, y, mapper, size)
    if len(names) > 1:
        legend = figure(
            width=size, height=size, toolbar_location=None, outline_line_color=None,
            title="Partial dependence (random-forest surrogate)",
        )
        legend.axis.visible = False
        legend.grid.visible = False
        legend.add_layout(ColorBar(color_mapper=mapper, ticker=BasicTicker(), title="partial dependence", width=12), "left")
        panels[0][len(names) - 1] = legend
    return gridplot(panels, toolbar_location="right", merge_tools=True)


def _pd_map(space, nx, ny, grids, values2d, trial_values, trial_ids, y, mapper, size) -> Any:
    dx, dy = space[nx], space[ny]
    xpos, ypos = _positions(dx, grids[nx][1]), _positions(dy, grids[ny][1])
    xl, xr_ = _edges(dx, xpos)
    yl, yr = _edges(dy, ypos)
    # partial_dependence returns values indexed [x grid, y grid]
    ix, iy = np.meshgrid(np.arange(len(xpos)), np.arange(len(ypos)), indexing="ij")
    ix, iy = ix.ravel(), iy.ravel()
    cells = ColumnDataSource(
        {
            "left": xl[ix], "right": xr_[ix], "bottom": yl[iy], "top": yr[iy],
            "x": [label(grids[nx][1][k]) for k in ix], "y": [label(grids[ny][1][k]) for k in iy],
            "pd": values2d[ix, iy],
        },
        name=f"pd_{nx}__{ny}",
    )
    fig = figure(
        width=size, height=size, tools=_TOOLS, x_axis_type=_axis_type(dx), y_axis_type=_axis_type(dy),
        x_axis_label=nx, y_axis_label=ny,
    )
    quads = fig.quad(
        "left", "right", "top", "bottom", source=cells, line_color=None,
        fill_color={"field": "pd", "transform": mapper},
    )
    observed = ColumnDataSource(
        {"x": _positions(dx, trial_values[nx]), "y": _positions(dy, trial_values[ny]), "objective": y, "trial": trial_ids},
        name="trials",
    )
    fig.scatter("x", "y", source=observed, size=3, color="black", alpha=0.6)
    fig.add_tools(HoverTool(renderers=[quads], tooltips=[(nx, "@x"), (ny, "@y"), ("partial dependence", "@pd{0.0000g}")]))
    if not isinstance(dx, Categorical):
        fig.x_range = Range1d(float(xl[0]), float(xr_[-1]))
    if not isinstance(dy, Categorical):
        fig.y_range = Range1d(float(yl[0]), float(yr[-1]))
    _style_param_axis(fig, "x", dx)
    _style_param_axis(fig, "y", dy)
    return fig


# -- importance --------------------------------------------------------------------------------

_IMPORTANCE_METHODS = {
    "permutation": "permutation importance of a random-forest surrogate: the drop in R² on held-out "
    "trials (5-fold cross-fitting) when the parameter is shuffled",
    "variance": "main-effect variance share (fANOVA-style): the variance of the random-forest "
    "surrogate's one-parameter partial dependence over the prior, divided by the variance of its "
    "predictions on the trials",
}


def importance(
    history: xr.Dataset | Experiment,
    method: str = "permutation",
    *,
    n_repeats: int = 10,
    seed: int = 0,
    width: int = 480,
    height: int | None = None,
) -> Any:
    """Which parameters matter, estimated from a surrogate of the objective.

    Parameters
    ----------
    history : xarray.Dataset or Experiment
    method : {"permutation", "variance"}
        ``"permutation"`` (default): permutation importance of a random-forest surrogate,
        cross-fitted (fit on 4/5 of the trials, shuffle a parameter in the held-out fifth,
        measure the drop in R², average over folds and ``n_repeats`` shuffles).
        ``"variance"``: fANOVA-style main-effect variance share, the variance of the
        surrogate's partial dependence on the parameter (over a grid of its prior) divided
        by the variance of the surrogate's predictions; the shares do not add up to one,
        the rest is interactions.
    n_repeats : int, default 10
        Shuffles per parameter and fold (``"permutation"``).
    seed : int, default 0
    width, height : int

    Returns
    -------
    bokeh.plotting.figure
        Horizontal bars, most important on top; its source, named ``"importance"``, has
        ``param``, ``importance``, ``lower`` and ``upper`` (± one standard deviation for
        ``"permutation"``).  The title names the method.

    Raises
    ------
    ValueError
        For an unknown method or fewer than 6 completed trials.
    """
    if method not in _IMPORTANCE_METHODS:
        raise ValueError(f"unknown importance method {method!r}; use one of {sorted(_IMPORTANCE_METHODS)}")
    ds, space = _resolve(history)
    mask = _need_completed(ds, 6, "importance()")
    names = list(space)
    X = _unit_matrix(ds, space, names, mask)
    y = ds["objective"].values[mask].astype(float)
    if method == "permutation":
        mean, std = _permutation_importance(X, y, n_repeats, seed)
    else:
        model = _surrogate(X, y, seed)
        total = float(np.var(model.predict(X)))
        mean = np.array([
            float(np.var(_pd(model, X, [k], [_grid(space[n], 25)[0]]))) / total if total > 0 else 0.0
            for k, n in enumerate(names)
        ])
        std = np.zeros_like(mean)
    order = np.argsort(mean, kind="stable")  # least important first: drawn at the bottom
    ordered = [names[k] for k in order]
    source = ColumnDataSource(
        {
            "param": ordered,
            "importance": mean[order],
            "lower": (mean - std)[order],
            "upper": (mean + std)[order],
        },
        name="importance",
    )
    title = "Importance: permutation of the surrogate (held-out R² drop)" if method == "permutation" else (
        "Importance: main-effect variance share of the surrogate"
    )
    fig = figure(
        y_range=FactorRange(factors=ordered), width=width, height=height or 80 + 40 * len(names),
        title=title, x_axis_label="importance", tools="save,reset", toolbar_location="right",
    )
    fig.hbar(y="param", right="importance", height=0.6, source=source, color="#1f77b4")
    if method == "permutation":
        fig.add_layout(Whisker(source=source, base="param", lower="lower", upper="upper", dimension="width"))
    fig.add_tools(HoverTool(tooltips=[("parameter", "@param"), ("importance", "@importance{0.000}")]))
    fig.x_range.start = min(0.0, float(np.min(mean - std)))
    return fig


def _permutation_importance(X: np.ndarray, y: np.ndarray, n_repeats: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.inspection import permutation_importance
    from sklearn.model_selection import KFold

    folds = KFold(n_splits=min(5, len(y) // 3), shuffle=True, random_state=seed)
    scores = []
    for k, (train, test) in enumerate(folds.split(X)):
        model = _surrogate(X[train], y[train], seed + k)
        result = permutation_importance(model, X[test], y[test], n_repeats=n_repeats, random_state=seed + k, scoring="r2")
        scores.append(result.importances)  # (n_features, n_repeats)
    all_scores = np.concatenate(scores, axis=1)
    return all_scores.mean(axis=1), all_scores.std(axis=1)


# -- parallel coordinates ----------------------------------------------------------------------

# The last y of every line is the raw objective; it is scaled to [0, 1] in the browser from
# the data present, so streamed trials never require re-sending the others.
_SCALE_LAST_JS = """
let lo = Infinity, hi = -Infinity
for (const y of xs) {
  const v = y[y.length - 1]
  if (v < lo) lo = v
  if (v > hi) hi = v
}
const span = hi > lo ? hi - lo : 1
return xs.map((y) => {
  const out = Array.from(y)
  out[out.length - 1] = (out[out.length - 1] - lo) / span
  return out
})
"""


def parcoords_row(space: Space, params: dict, objective: float) -> tuple[list[float], list[float]]:
    """The ``xs`` and ``ys`` of one trial's line (parameters in unit space, then the objective)."""
    names = list(space)
    ys = [float(space[n].to_unit(params[n])) for n in names]
    return list(range(len(names) + 1)), [*ys, float(objective)]


def objective_ticks(lo: float, hi: float, n: int = 5) -> tuple[list[float], list[str]]:
    """Positions in [0, 1] and labels of the objective axis of parallel coordinates."""
    span = hi - lo if hi > lo else 1.0
    positions = list(np.linspace(0, 1, n))
    return positions, [f"{lo + p * span:.4g}" for p in positions]


def parcoords_labels(space: Space, lo: float, hi: float) -> dict[str, list]:
    """Tick labels of every parallel axis: ``x``, ``y`` (unit position) and ``text``."""
    xs, ys, texts = [], [], []
    for i, name in enumerate(space):
        for position, text in _ticks(space[name]):
            xs.append(i)
            ys.append(position)
            texts.append(text)
    positions, texts_obj = objective_ticks(lo, hi)
    n = len(space)
    return {"x": xs + [n] * len(positions), "y": ys + positions, "text": texts + texts_obj}


def parcoords_figure(
    space: Space,
    lines: ColumnDataSource,
    labels: ColumnDataSource,
    mapper: LinearColorMapper,
    *,
    width: int = 900,
    height: int = 360,
    **kwargs: Any,
) -> Any:
    """A parallel-coordinates figure drawn from a source of lines and one of axis labels."""
    names = list(space)
    n = len(names)
    fig = figure(
        title="Parallel coordinates (colour: objective)",
        width=width,
        height=height,
        x_range=Range1d(-0.3, n + 0.6),
        y_range=Range1d(-0.06, 1.06),
        tools="pan,wheel_zoom,box_zoom,reset,save",
        **kwargs,
    )
    fig.xaxis.ticker = FixedTicker(ticks=list(range(n + 1)))
    axis_names = {i: f"{name} (log)" if is_log(space[name]) else name for i, name in enumerate(names)}
    fig.xaxis.major_label_overrides = {**axis_names, n: "objective"}
    fig.yaxis.visible = False
    fig.ygrid.visible = False
    fig.xgrid.visible = False
    fig.segment(x0=list(range(n + 1)), y0=[0] * (n + 1), x1=list(range(n + 1)), y1=[1] * (n + 1), color="black", line_width=1.5)
    scaled = transform("ys", CustomJSTransform(v_func=_SCALE_LAST_JS))
    multi = fig.multi_line(
        "xs", scaled, source=lines, line_width=1, line_alpha=0.6,
        line_color={"field": "objective", "transform": mapper}, name="parcoords_lines",
        hover_line_color="#d62728", hover_line_alpha=1.0, hover_line_width=3,
    )
    fig.text("x", "y", "text", source=labels, x_offset=4, text_font_size="9pt", text_baseline="middle", name="parcoords_labels")
    fig.add_tools(HoverTool(renderers=[multi], tooltips=[("trial", "@trial"), ("objective", "@objective{0.0000g}")]))
    fig.add_layout(ColorBar(color_mapper=mapper, width=10, title="objective"), "right")
    return fig


def parallel_coordinates(history: xr.Dataset | Experiment, *, width: int = 900, height: int = 360) -> Any:
    """One line per completed trial across every parameter, coloured by its objective.

    Each parameter has a vertical axis spanning its prior in unit space: log priors on a log
    scale, categorical choices at their labelled positions, numbers labelled with a few
    values.  The last axis is the objective, scaled from its minimum to its maximum.

    Parameters
    ----------
    history : xarray.Dataset or Experiment
    width, height : int

    Returns
    -------
    bokeh.plotting.figure
        Its source named ``"lines"`` has ``trial``, ``objective``, ``xs`` and ``ys`` (the
        parameters' unit positions, then the raw objective); ``"labels"`` holds the axis
        labels.

    Raises
    ------
    ValueError
        Without a completed trial.
    """
    ds, space = _resolve(history)
    mask = _need_completed(ds, 1, "parallel_coordinates()")
    names = list(space)
    unit = _unit_matrix(ds, space, names, mask)
    objective = ds["objective"].values[mask].astype(float)
    xs = [list(range(len(names) + 1))] * len(objective)
    ys = [[*u, o] for u, o in zip(unit.tolist(), objective.tolist())]
    lines = ColumnDataSource(
        {"trial": ds["trial"].values[mask].astype(int), "objective": objective, "xs": xs, "ys": ys}, name="lines"
    )
    lo, hi = float(objective.min()), float(objective.max())
    labels = ColumnDataSource(parcoords_labels(space, lo, hi), name="labels")
    mapper = LinearColorMapper(palette=Viridis256, low=lo, high=hi if hi > lo else lo + 1)
    return parcoords_figure(space, lines, labels, mapper, width=width, height=height)


# -- timeline ----------------------------------------------------------------------------------


def timeline_columns(records: Sequence[TrialRecord]) -> dict[str, list]:
    """Timeline rows of trial records (epoch-second times): one bar per trial."""
    cols: dict[str, list] = {k: [] for k in ("trial", "worker", "start", "end", "status", "color", "duration")}
    for r in records:
        start = r.started if r.started is not None else r.submitted
        end = r.ended
        cols["trial"].append(int(r.trial))
        cols["worker"].append(r.worker or "(no worker)")
        cols["start"].append(start * 1e3 if start is not None else math.nan)
        cols["end"].append(end * 1e3 if end is not None else math.nan)
        cols["status"].append(r.status)
        cols["color"].append(status_color(r.status))
        cols["duration"].append(end - start if start is not None and end is not None else math.nan)
    return cols


def timeline_figure(source: ColumnDataSource, workers: Sequence[str], *, width: int = 900, height: int | None = None, **kwargs: Any) -> Any:
    """A timeline figure drawn from a source of bars (see :func:`timeline_columns`)."""
    fig = figure(
        title="Trials on workers over time (colour: status)",
        y_range=FactorRange(factors=list(workers)),
        x_axis_type="datetime",
        width=width,
        height=height or max(180, 60 + 28 * len(workers)),
        tools="xpan,xwheel_zoom,box_zoom,reset,save",
        x_axis_label="wall time",
        **kwargs,
    )
    # Outside the plot area, so that it never hides bars; legend_field fills it.
    fig.add_layout(Legend(orientation="horizontal", location="top_left", border_line_color=None), "above")
    bars = fig.hbar(
        y="worker", left="start", right="end", height=0.7, source=source, fill_color="color",
        line_color="white", line_width=0.5, legend_field="status", name="timeline_bars",
    )
    fig.add_tools(HoverTool(renderers=[bars], tooltips=[
        ("trial", "@trial"), ("status", "@status"), ("worker", "@worker"), ("duration", "@duration{0.00} s"),
    ]))
    return fig


def timeline(history: xr.Dataset | Experiment, *, width: int = 900, height: int | None = None) -> Any:
    """One bar per trial on its worker, from its start to its end, coloured by status.

    Idle gaps between bars are idle worker slots; long bars are stragglers; broken, timed-out
    and lost trials stand out by colour.  A trial that never started on a worker (lost,
    timed out in the queue) is drawn from its submission on the row ``"(no worker)"``.

    Parameters
    ----------
    history : xarray.Dataset or Experiment
    width, height : int

    Returns
    -------
    bokeh.plotting.figure
        Its source named ``"bars"`` has ``trial``, ``worker``, ``start`` and ``end``
        (milliseconds since the epoch), ``status``, ``color`` and ``duration`` (seconds).

    Raises
    ------
    ValueError
        For an empty history.
    """
    ds, _ = _resolve(history)
    if ds.sizes.get("trial", 0) == 0:
        raise ValueError("timeline() needs at least one trial; the history is empty")
    records = []
    times = {k: _ms(ds[k].values) / 1e3 for k in ("submitted", "started", "ended")}
    for i, trial in enumerate(ds["trial"].values):
        records.append(TrialRecord(
            int(trial), {}, str(ds["status"].values[i]), worker=str(ds["worker"].values[i]) or None,
            **{k: (None if math.isnan(v[i]) else float(v[i])) for k, v in times.items()},
        ))
    cols = timeline_columns(records)
    source = ColumnDataSource(cols, name="bars")
    return timeline_figure(source, sorted(set(cols["worker"])), width=width, height=height)


# -- intermediate results ----------------------------------------------------------------------


def intermediate(history: xr.Dataset | Experiment, metric: str = "objective", *, log_y: bool = False, width: int = 700, height: int = 380) -> Any:
    """Learning curves: the values each trial reported at each step.

    Reads the variable ``reported_<metric>`` (dimensions ``trial`` and ``step``) that the
    history holds when objectives report intermediate results.

    Parameters
    ----------
    history : xarray.Dataset or Experiment
    metric : str, default "objective"
    log_y : bool, default False
    width, height : int

    Returns
    -------
    bokeh.plotting.figure
        Its source named ``"curves"`` has ``trial``, ``status``, ``color``, ``last`` (the
        last reported value) and ``xs``/``ys`` (steps and values, NaN steps dropped).

    Raises
    ------
    ValueError
        When the history holds no intermediate results for ``metric`` (the message lists
        the metrics that have some), or none is finite.
    """
    ds, _ = _resolve(history)
    var = f"reported_{metric}"
    if var not in ds.variables:
        have = sorted(str(v)[len("reported_"):] for v in ds.data_vars if str(v).startswith("reported_"))
        hint = f"it has intermediate results for {have}" if have else (
            "it has none: objectives report them while they run, as variables reported_<metric> "
            "with dimensions (trial, step)"
        )
        raise ValueError(f"no intermediate results for metric {metric!r} in this history; {hint}")
    da = ds[var]
    if set(da.dims) != {"trial", "step"}:
        raise ValueError(f"{var} has dimensions {da.dims}; expected ('trial', 'step')")
    da = da.transpose("trial", "step")
    steps = np.asarray(ds["step"].values, dtype=float)
    values = np.asarray(da.values, dtype=float)
    status = ds["status"].values.astype(str) if "status" in ds else np.array(["completed"] * values.shape[0])
    cols: dict[str, list] = {k: [] for k in ("trial", "status", "color", "last", "xs", "ys")}
    for i, trial in enumerate(ds["trial"].values):
        keep = np.isfinite(values[i])
        if not keep.any():
            continue
        cols["trial"].append(int(trial))
        cols["status"].append(str(status[i]))
        cols["color"].append(status_color(str(status[i])))
        cols["last"].append(float(values[i][keep][-1]))
        cols["xs"].append(steps[keep].tolist())
        cols["ys"].append(values[i][keep].tolist())
    if not cols["trial"]:
        raise ValueError(f"{var} holds no finite value")
    source = ColumnDataSource(cols, name="curves")
    fig = figure(
        title=f"Intermediate {metric} by step (colour: status)", width=width, height=height,
        x_axis_label="step", y_axis_label=metric, y_axis_type="log" if log_y else "linear", tools=_TOOLS,
    )
    lines = fig.multi_line("xs", "ys", source=source, line_color="color", line_alpha=0.7, line_width=1.5,
                           legend_field="status", hover_line_width=3, hover_line_alpha=1.0)
    fig.add_tools(HoverTool(renderers=[lines], tooltips=[("trial", "@trial"), ("status", "@status"), ("last", "@last{0.0000g}")]))
    fig.legend.location = "top_right"
    return fig


# -- saving and the accessor -------------------------------------------------------------------


def save_html(obj: Model, path: str | os.PathLike, *, title: str = "daskhpo", resources: str = "inline") -> str:
    """Write a plot to a standalone HTML file.

    Parameters
    ----------
    obj : bokeh model
        What a plot function returned.
    path : path
    title : str
    resources : {"inline", "cdn"}, default "inline"
        ``"inline"`` embeds BokehJS, so the file opens without network access;
        ``"cdn"`` makes a small file that loads BokehJS from the Bokeh CDN.

    Returns
    -------
    str
        The path written.
    """
    from bokeh.embed import file_html
    from bokeh.resources import CDN, INLINE

    if resources not in ("inline", "cdn"):
        raise ValueError(f"resources must be 'inline' or 'cdn', got {resources!r}")
    html = file_html(obj, INLINE if resources == "inline" else CDN, title)
    path = os.fspath(path)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(html)
    logger.info("wrote %s", path)
    return path


def save(obj: Model, path: str | os.PathLike, **kwargs: Any) -> str:
    """Write a plot to a file, of the kind its suffix says.

    ``.html``/``.htm``: a standalone page (:func:`save_html`; nothing to install).
    ``.png``/``.svg``: an image drawn by a headless browser
    (:func:`daskhpo.viz.export.save_image`; needs ``pip install playwright`` and
    ``python -m playwright install chromium``, or a Chromium already installed).

    Parameters
    ----------
    obj : bokeh model
    path : path
    **kwargs
        Passed to :func:`save_html` (``title``, ``resources``) or
        :func:`~daskhpo.viz.export.save_image` (``scale``, ``timeout``).

    Returns
    -------
    str
        The path written.

    Raises
    ------
    ValueError
        For another suffix (nothing is written).
    daskhpo.viz.export.ImageExportUnavailable
        For an image without a browser to draw it (the message says how to get one).
    """
    from .export import IMAGE_FORMATS, save_image

    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix in (".html", ".htm"):
        return save_html(obj, path, **kwargs)
    if suffix in IMAGE_FORMATS:
        return save_image(obj, path, **kwargs)
    raise ValueError(f"path: save writes .html, .png or .svg files, got {os.fspath(path)!r}")


class PlotAccessor:
    """``experiment.plot.<kind>(...)``: the plots of :mod:`daskhpo.viz.plot` for one experiment.

    Each method takes the keyword arguments of the function of the same name, without the
    history, and returns a Bokeh object.  ``save(obj, path)`` writes one to HTML, PNG or SVG
    (see :func:`save`).
    """

    def __init__(self, experiment: Experiment) -> None:
        self._experiment = experiment

    def __repr__(self) -> str:
        return f"<PlotAccessor of {self._experiment!r}: regret, partial_dependencies, parallel_coordinates, importance, timeline, intermediate, pareto>"

    def regret(self, **kwargs: Any) -> Any:
        """See :func:`daskhpo.viz.plot.regret`."""
        return regret(self._experiment, **kwargs)

    def partial_dependencies(self, params: Sequence[str] | None = None, n_grid: int = 20, **kwargs: Any) -> Any:
        """See :func:`daskhpo.viz.plot.partial_dependencies`."""
        return partial_dependencies(self._experiment, params, n_grid, **kwargs)

    def parallel_coordinates(self, **kwargs: Any) -> Any:
        """See :func:`daskhpo.viz.plot.parallel_coordinates`."""
        return parallel_coordinates(self._experiment, **kwargs)

    def importance(self, method: str = "permutation", **kwargs: Any) -> Any:
        """See :func:`daskhpo.viz.plot.importance`."""
        return importance(self._experiment, method, **kwargs)

    def timeline(self, **kwargs: Any) -> Any:
        """See :func:`daskhpo.viz.plot.timeline`."""
        return timeline(self._experiment, **kwargs)

    def intermediate(self, metric: str = "objective", **kwargs: Any) -> Any:
        """See :func:`daskhpo.viz.plot.intermediate`."""
        return intermediate(self._experiment, metric, **kwargs)

    def pareto(self, **kwargs: Any) -> Any:
        """See :func:`daskhpo.viz.plot.pareto`."""
        return pareto(self._experiment, **kwargs)

    @staticmethod
    def save(obj: Model, path: str | os.PathLike, **kwargs: Any) -> str:
        """See :func:`daskhpo.viz.plot.save` (HTML, PNG or SVG by the path's suffix)."""
        return save(obj, path, **kwargs)


# -- showing: .show(), .save(path) and inline display in Jupyter --------------------------------

#: BokehJS for inline notebook display: "cdn" (small outputs; the browser loads BokehJS from
#: cdn.bokeh.org) or "inline" (works offline; about 1.5 MB per displayed plot)
NOTEBOOK_RESOURCES = "cdn"


def _no_display() -> bool:
    """Linux or BSD without X11 or Wayland (a login node, ssh without -X): no browser window."""
    import sys

    if sys.platform.startswith(("win", "darwin", "cygwin")):
        return False
    return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _show(self: Any) -> str | None:
    """Display the plot: inline in a notebook, else in a web browser (from a temporary HTML file).

    Without a display or a browser to open, a warning (logged) says where the page is.
    Returns the path of the HTML file written, or ``None`` in a notebook.
    """
    if in_notebook():
        from IPython.display import display  # type: ignore[import-not-found]

        display(self)
        return None
    import tempfile
    import webbrowser

    fd, path = tempfile.mkstemp(prefix="daskhpo-", suffix=".html")
    os.close(fd)
    save_html(self, path)
    path = os.path.abspath(path)
    if _no_display():
        # a console browser (w3m, lynx) would take the terminal over: say where the page is
        logger.warning("no display to open a browser on: the plot is in %s (copy it to your machine, "
                       "or .save('plot.png') for an image)", path)
    elif not webbrowser.open("file://" + path):
        logger.warning("no web browser found to open the plot: it is in %s", path)
    return path


def _save(self: Any, path: str | os.PathLike, **kwargs: Any) -> str:
    """Write the plot to HTML, PNG or SVG, by the path's suffix (see :func:`save`); returns the path."""
    return save(self, path, **kwargs)


def _repr_mimebundle_(self: Any, include: Any = None, exclude: Any = None) -> dict[str, str]:
    """Jupyter's rich display: the plot in an ``<iframe>`` (no ``output_notebook()`` needed)."""
    import html

    from bokeh.embed import file_html
    from bokeh.resources import CDN, INLINE

    page = file_html(self, INLINE if NOTEBOOK_RESOURCES == "inline" else CDN, "daskhpo")
    width = (getattr(self, "width", None) or 900) + 40
    height = (getattr(self, "height", None) or 420) + 40
    frame = (
        f'<iframe srcdoc="{html.escape(page, quote=True)}" style="border:none" '
        f'width="{width}" height="{height}" sandbox="allow-scripts"></iframe>'
    )
    return {"text/html": frame, "text/plain": f"<daskhpo plot {type(self).__name__}: .show(), .save(path)>"}


def displayable(obj: Any) -> Any:
    """Give a Bokeh object ``.show()``, ``.save(path)`` and inline display in Jupyter.

    The object stays the same Bokeh object (``bokeh.io.show(obj)``, embedding and
    ``select`` work as before); the three methods are set on this instance only.
    """
    import types

    for name, method in (("show", _show), ("save", _save), ("_repr_mimebundle_", _repr_mimebundle_)):
        # Bokeh models refuse unknown attributes through their __setattr__; these are not
        # properties (never serialized), only methods of this Python object.
        object.__setattr__(obj, name, types.MethodType(method, obj))
    return obj


def _displayable_result(fn: Any) -> Any:
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return displayable(fn(*args, **kwargs))

    return wrapper


regret = _displayable_result(regret)
partial_dependencies = _displayable_result(partial_dependencies)
parallel_coordinates = _displayable_result(parallel_coordinates)
importance = _displayable_result(importance)
timeline = _displayable_result(timeline)
intermediate = _displayable_result(intermediate)
pareto = _displayable_result(pareto)
