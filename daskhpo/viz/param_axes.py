"""Axes of parameters: ticks and positions of a dimension's values, log and categorical axes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from bokeh.models import FixedTicker, Range1d

from ..space import Categorical, Dimension
from .reading import is_log, label


def unit_span(dim: Dimension) -> tuple[float, float]:
    """The part of the unit interval a dimension's axis shows."""
    # A normal prior has no bounds: draw the central 99 % of it.
    return (0.005, 0.995) if getattr(dim, "prior", "") == "normal" else (0.0, 1.0)


def axis_ticks(dim: Dimension, n: int = 5) -> list[tuple[float, str]]:
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
    lo, hi = unit_span(dim)
    ticks, seen = [], set()
    for p in np.linspace(lo, hi, n):
        value = dim.from_unit(float(p))
        text = label(value)
        if text not in seen:
            seen.add(text)
            ticks.append((dim.to_unit(value), text))
    return ticks


def positions(dim: Dimension, values: Sequence[Any]) -> list:
    """Where values sit on a parameter's axis (categorical choices at 0, 1, 2...)."""
    if isinstance(dim, Categorical):
        return [dim.index(v) for v in values]
    return [float(v) for v in values]


def style_param_axis(fig: Any, axis: str, dim: Dimension) -> None:
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


def axis_type(dim: Dimension) -> str:
    """Bokeh's axis type for a dimension: ``"log"`` or ``"linear"``."""
    return "log" if is_log(dim) else "linear"
