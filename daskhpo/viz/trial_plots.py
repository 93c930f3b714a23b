"""Plots of the trials: parallel coordinates, the timeline of workers, intermediate results."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from bokeh.models import (
    ColorBar,
    ColumnDataSource,
    CustomJSTransform,
    FactorRange,
    FixedTicker,
    HoverTool,
    Legend,
    LinearColorMapper,
    Range1d,
)
from bokeh.palettes import Viridis256
from bokeh.plotting import figure
from bokeh.transform import transform

from ..records import TrialRecord
from ..space import Space
from .param_axes import axis_ticks
from .reading import TOOLS, is_log, need_completed, resolve, status_color, to_milliseconds, unit_matrix

if TYPE_CHECKING:
    from ..experiment import Experiment


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
        for position, text in axis_ticks(space[name]):
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
    ds, space = resolve(history)
    mask = need_completed(ds, 1, "parallel_coordinates()")
    names = list(space)
    unit = unit_matrix(ds, space, names, mask)
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
    ds, _ = resolve(history)
    if ds.sizes.get("trial", 0) == 0:
        raise ValueError("timeline() needs at least one trial; the history is empty")
    records = []
    times = {k: to_milliseconds(ds[k].values) / 1e3 for k in ("submitted", "started", "ended")}
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
    ds, _ = resolve(history)
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
        x_axis_label="step", y_axis_label=metric, y_axis_type="log" if log_y else "linear", tools=TOOLS,
    )
    lines = fig.multi_line("xs", "ys", source=source, line_color="color", line_alpha=0.7, line_width=1.5,
                           legend_field="status", hover_line_width=3, hover_line_alpha=1.0)
    fig.add_tools(HoverTool(renderers=[lines], tooltips=[("trial", "@trial"), ("status", "@status"), ("last", "@last{0.0000g}")]))
    fig.legend.location = "top_right"
    return fig
