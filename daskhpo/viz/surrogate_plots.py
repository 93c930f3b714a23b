"""Plots drawn from a surrogate model fit to the completed trials: partial dependencies
and the importance of each parameter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from bokeh.layouts import gridplot
from bokeh.models import (
    BasicTicker,
    ColorBar,
    ColumnDataSource,
    DataRange1d,
    FactorRange,
    HoverTool,
    LinearColorMapper,
    Range1d,
    Whisker,
)
from bokeh.palettes import Viridis256
from bokeh.plotting import figure

from ..space import Categorical, Dimension
from .param_axes import axis_type, positions, style_param_axis, unit_span
from .reading import TOOLS, decode, is_log, label, need_completed, resolve, unit_matrix

if TYPE_CHECKING:
    from ..experiment import Experiment


# -- the surrogate -----------------------------------------------------------------------------


def _surrogate(X: np.ndarray, y: np.ndarray, seed: int, n_estimators: int = 100) -> Any:
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=n_estimators, min_samples_leaf=2, random_state=seed, n_jobs=1).fit(X, y)


def _grid(dim: Dimension, n_grid: int) -> tuple[np.ndarray, list]:
    """Unit positions and values of a dimension's grid for partial dependence."""
    if isinstance(dim, Categorical):
        values = list(dim.choices)
    else:
        lo, hi = unit_span(dim)
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
    ds, space = resolve(history)
    names = list(space) if params is None else list(params)
    unknown = [p for p in names if p not in space]
    if unknown or not names:
        raise ValueError(f"unknown parameter(s) {unknown}; the space has {list(space)}")
    if not isinstance(n_grid, int) or n_grid < 2:
        raise ValueError(f"n_grid must be an integer >= 2, got {n_grid!r}")
    mask = need_completed(ds, 3, "partial_dependencies()")
    all_names = list(space)
    X = unit_matrix(ds, space, all_names, mask)
    y = ds["objective"].values[mask].astype(float)
    model = _surrogate(X, y, seed)
    index = {n: all_names.index(n) for n in names}
    grids = {n: _grid(space[n], n_grid) for n in names}
    trial_values = {n: decode(space[n], ds[n].values[mask]) for n in names}
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
            {"value": [label(v) for v in values], "position": positions(dim, values), "pd": one_d[name]},
            name=f"pd_{name}",
        )
        fig = figure(
            width=size, height=size, tools=TOOLS, x_axis_type=axis_type(dim),
            x_axis_label=name, y_axis_label="partial dependence",
        )
        observed = ColumnDataSource(
            {"x": positions(dim, trial_values[name]), "objective": y, "trial": trial_ids}, name="trials"
        )
        fig.scatter("x", "objective", source=observed, size=3, color="#999999", alpha=0.4)
        line = fig.line("position", "pd", source=source, line_width=2, color="#1f77b4")
        fig.scatter("position", "pd", source=source, size=4, color="#1f77b4")
        fig.y_range = DataRange1d(renderers=[line])
        fig.add_tools(HoverTool(renderers=[line], tooltips=[(name, "@value"), ("partial dependence", "@pd{0.0000g}")]))
        style_param_axis(fig, "x", dim)
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
    xpos, ypos = positions(dx, grids[nx][1]), positions(dy, grids[ny][1])
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
        width=size, height=size, tools=TOOLS, x_axis_type=axis_type(dx), y_axis_type=axis_type(dy),
        x_axis_label=nx, y_axis_label=ny,
    )
    quads = fig.quad(
        "left", "right", "top", "bottom", source=cells, line_color=None,
        fill_color={"field": "pd", "transform": mapper},
    )
    observed = ColumnDataSource(
        {"x": positions(dx, trial_values[nx]), "y": positions(dy, trial_values[ny]), "objective": y, "trial": trial_ids},
        name="trials",
    )
    fig.scatter("x", "y", source=observed, size=3, color="black", alpha=0.6)
    fig.add_tools(HoverTool(renderers=[quads], tooltips=[(nx, "@x"), (ny, "@y"), ("partial dependence", "@pd{0.0000g}")]))
    if not isinstance(dx, Categorical):
        fig.x_range = Range1d(float(xl[0]), float(xr_[-1]))
    if not isinstance(dy, Categorical):
        fig.y_range = Range1d(float(yl[0]), float(yr[-1]))
    style_param_axis(fig, "x", dx)
    style_param_axis(fig, "y", dy)
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
    ds, space = resolve(history)
    mask = need_completed(ds, 6, "importance()")
    names = list(space)
    X = unit_matrix(ds, space, names, mask)
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
