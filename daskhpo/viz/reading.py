"""Reading a history for the plots: its dataset and space, completed trials, parameter
columns, and the colours and labels every plot shares (:mod:`daskhpo.viz.plot` is the public entry)."""

from __future__ import annotations

import ast
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from ..objectives import objectives_from_attrs
from ..space import Dimension, Fidelity, Space

if TYPE_CHECKING:
    from ..experiment import Experiment

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

#: the Bokeh tools of every figure
TOOLS = "pan,wheel_zoom,box_zoom,reset,save"


# -- reading the history ----------------------------------------------------------------------


def resolve(history: xr.Dataset | Experiment) -> tuple[xr.Dataset, Space]:
    """The dataset and the space of an experiment or of a history dataset."""
    if isinstance(history, xr.Dataset):
        if "space" not in history.attrs:
            raise ValueError("this dataset has no 'space' attr; is it a daskhpo history?")
        return history, Space(json.loads(history.attrs["space"]))
    if hasattr(history, "history") and hasattr(history, "space"):
        return history.history, history.space
    raise TypeError(f"expected an xarray.Dataset or an Experiment, got {type(history).__name__}")


def decode(dim: Dimension, raw: np.ndarray) -> list:
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


def need_completed(ds: xr.Dataset, minimum: int, what: str) -> np.ndarray:
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


def unit_matrix(ds: xr.Dataset, space: Space, names: Sequence[str], mask: np.ndarray) -> np.ndarray:
    """Trials (rows where ``mask``) mapped to the unit cube, one column per name."""
    columns = []
    for name in names:
        dim = space[name]
        values = decode(dim, ds[name].values[mask])
        columns.append([dim.to_unit(v) for v in values])
    return np.array(columns, dtype=float).T.reshape(int(mask.sum()), len(names))


def to_milliseconds(values: np.ndarray) -> np.ndarray:
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
