"""What an objective may return, and the names the history reserves."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["BOOKKEEPING", "RESERVED", "InvalidResult", "parse_result"]

#: bookkeeping variables of the history, one value per trial
BOOKKEEPING = (
    "status",
    "submitted",
    "started",
    "ended",
    "duration",
    "worker",
    "gpu",
    "attempts",
    "error",
    "parent",
    "checkpoint_from",
    "last_step",
    "order",
)
#: names no parameter may take (metrics may use ``objective``, which is the point)
RESERVED = frozenset(BOOKKEEPING + ("trial", "step", "objective", "report_order"))


class InvalidResult(ValueError):
    """An objective returned something that is not a result."""


def _number(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "iuf":
            return float(value.reshape(()))
        raise InvalidResult(f"metric {name!r} must be a real number, got {value!r}")
    return float(value)


def parse_result(value: Any) -> tuple[float, dict[str, float]]:
    """Read an objective's return value.

    Accepted: a number; a dict of metrics with the key ``"objective"``; or a list of
    ``{"name", "type", "value"}`` dicts (Orion's format) with exactly one entry of type
    ``"objective"``.

    Returns
    -------
    objective : float
        The value to minimize (may be NaN or infinite: the caller decides what that means).
    metrics : dict
        Every other metric, by name.

    Raises
    ------
    InvalidResult
        With a message that says what was returned and what is expected.
    """
    if isinstance(value, Mapping):
        if "objective" not in value:
            raise InvalidResult(f"a dict result needs the key 'objective', got keys {sorted(map(str, value))}")
        metrics = {str(k): _number(str(k), v) for k, v in value.items() if k != "objective"}
        objective = _number("objective", value["objective"])
    elif isinstance(value, (list, tuple)):
        objective, metrics, n_objectives = math.nan, {}, 0
        for entry in value:
            if not (isinstance(entry, Mapping) and {"name", "type", "value"} <= set(entry)):
                raise InvalidResult(
                    f"a list result holds {{'name', 'type', 'value'}} dicts, got {entry!r}"
                )
            number = _number(str(entry["name"]), entry["value"])
            if entry["type"] == "objective":
                objective, n_objectives = number, n_objectives + 1
            else:
                metrics[str(entry["name"])] = number
        if n_objectives != 1:
            raise InvalidResult(f"a list result needs exactly one entry of type 'objective', got {n_objectives}")
    else:
        try:
            objective, metrics = _number("objective", value), {}
        except InvalidResult:
            raise InvalidResult(
                f"objective returned {type(value).__name__} {value!r}; expected a number, "
                "a dict with key 'objective', or a list of {'name', 'type', 'value'} dicts"
            ) from None
    clash = sorted(set(metrics) & RESERVED)
    if clash:
        raise InvalidResult(f"metric name(s) {clash} are reserved by the history")
    return objective, metrics
