"""Plots of the objective(s): the regret (objective and best so far) and the Pareto front."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from bokeh.layouts import gridplot, row
from bokeh.models import ColumnDataSource, HoverTool
from bokeh.plotting import figure

from ..objectives import objectives_from_attrs, signs, variable
from ..pareto import non_dominated
from .reading import TOOLS, best_so_far, direction, need_completed, resolve, to_milliseconds

if TYPE_CHECKING:
    from ..experiment import Experiment


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
    ds, _ = resolve(history)
    mask = need_completed(ds, 1, "regret()")
    way = direction(ds)
    trial = ds["trial"].values[mask].astype(int)
    objective = ds["objective"].values[mask].astype(float)
    ended = to_milliseconds(ds["ended"].values)
    t0 = np.nanmin(to_milliseconds(ds["submitted"].values))
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
        tools=TOOLS,
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
    fig = figure(title=f"{y} against {x}", x_axis_label=x, y_axis_label=y, width=width, height=height, tools=TOOLS, **kwargs)
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
    ds, _ = resolve(history)
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
