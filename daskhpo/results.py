"""What an objective may return, read on the worker into a typed :class:`Result`; and the
names the history reserves.

:func:`parse_result` is the one place where an objective's return value is interpreted:
its objective (or, with several objectives, their values), its constraints and its other
metrics each land in their own field of :class:`Result`, which the worker copies into the
trial's :class:`~daskhpo.records.TrialRecord`.  Nothing travels hidden among the metrics.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "BOOKKEEPING",
    "CONSTRAINT",
    "RESERVED",
    "RESERVED_PREFIXES",
    "InvalidResult",
    "Result",
    "name_problem",
    "parse_result",
]

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
    "feasible",
    "preempted",
)
#: names no parameter may take (metrics may use ``objective``, which is the point)
RESERVED = frozenset(BOOKKEEPING + ("trial", "step", "objective", "report_order", "preempted_time",
                                    "preempted_step"))


class InvalidResult(ValueError):
    """An objective returned something that is not a result.

    The engine records the trial as ``broken`` with this message; nothing is stored from it.
    """


#: prefix of the history's constraint variables (``constraint_0``, ``constraint_1``, ...)
CONSTRAINT = "constraint_"
#: prefixes of variable names the history's dataset derives from metric names
#: (``reported_<metric>`` holds a metric's intermediate reports) or keeps for constraints: a
#: metric starting with one would collide with those variables on disk, so none may
RESERVED_PREFIXES = ("reported_", CONSTRAINT)


@dataclass(frozen=True)
class Result:
    """An objective's return value, once read.

    Attributes
    ----------
    objective : float
        The value to minimize (may be NaN or infinite: the caller decides what that
        means); NaN with several objectives.
    metrics : dict
        Every other number the objective returned, by name.
    constraints : tuple of float
        The constraint values, in order (feasible when every one is ``<= 0``).
    values : tuple of float
        With several objectives (``parse_result(..., objectives=names)``), their values in
        the order of ``names``, each finite; empty otherwise.
    """

    objective: float = math.nan
    metrics: dict[str, float] = field(default_factory=dict)
    constraints: tuple[float, ...] = ()
    values: tuple[float, ...] = ()

    @property
    def finite(self) -> bool:
        """Whether the trial completed: a finite objective (every one of :attr:`values`, if any)."""
        if self.values:
            return all(math.isfinite(v) for v in self.values)
        return math.isfinite(self.objective)

_MAX_SHOWN = 120


def show_value(value: Any) -> str:
    """A short ``repr`` that never raises (huge ints, broken ``__repr__``)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**30:
        return f"an int of about {int(abs(value).bit_length() * math.log10(2)) + 1} digits"
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__} object>"
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def checked_number(name: str, value: Any) -> float:
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "iuf":
        value = value.reshape(()).item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise InvalidResult(f"metric {name!r} must be a real number, got {type(value).__name__} {show_value(value)}")
    try:
        return float(value)
    except OverflowError:
        raise InvalidResult(
            f"metric {name!r} is too large to be stored as a float64: {show_value(value)}"
        ) from None


def name_problem(name: str, params: Collection[str] = ()) -> str | None:
    """Why ``name`` cannot be a metric of a history, or ``None`` when it can.

    Parameters
    ----------
    name : str
        The metric name.
    params : collection of str
        The space's parameter names: a metric may not take one (it would overwrite the
        parameter's values).
    """
    if name in params:
        return f"metric {name!r} has the name of a parameter of the space"
    if name in RESERVED:
        return f"metric {name!r} has a name reserved by the history ({sorted(RESERVED)})"
    for prefix in RESERVED_PREFIXES:
        if name.startswith(prefix):
            what = "constraints" if prefix == CONSTRAINT else "intermediate reports"
            return f"metric {name!r} starts with {prefix!r}, reserved for {what}"
    if not name or name in (".", "..") or "/" in name or "\x00" in name:
        return f"metric name {name!r} cannot be stored (empty, '.', '..', or contains '/' or NUL)"
    return None


def _name(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
        return str(key)
    raise InvalidResult(f"metric names must be strings, got {type(key).__name__} {show_value(key)}")


def _constraints(value: Any) -> list[float]:
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = list(value)
    if not isinstance(value, (list, tuple)):
        raise InvalidResult(
            f"'constraints' must be a list of finite numbers (feasible when every one is <= 0), "
            f"got {type(value).__name__} {show_value(value)}"
        )
    out = []
    for i, item in enumerate(value):
        try:
            number = checked_number(f"constraints[{i}]", item)
        except InvalidResult as exc:
            raise InvalidResult(f"'constraints' must be a list of finite numbers: {exc}") from None
        if not math.isfinite(number):
            raise InvalidResult(f"'constraints' must be a list of finite numbers: constraints[{i}] is {number}")
        out.append(number)
    return out


def _rest(value: Mapping[Any, Any], skip: Collection[str]) -> tuple[dict[str, float], list[float]]:
    """The metrics and the constraints of a dict result, leaving out the keys ``skip``."""
    metrics: dict[str, float] = {}
    constraints = _constraints(value["constraints"]) if "constraints" in value else []
    for key, item in value.items():
        if isinstance(key, str) and (key == "constraints" or key in skip):
            continue
        name = _name(key)
        if name in metrics:
            raise InvalidResult(f"metric {name!r} is given twice (as {show_value(key)} and another key)")
        metrics[name] = checked_number(name, item)
    return metrics, constraints


def _objective_values(value: Any, names: Sequence[str]) -> tuple[tuple[float, ...], dict[str, float], list[float]]:
    """Several objectives' values from a dict result, in the order of ``names``; its metrics and constraints."""
    names = list(names)
    if not isinstance(value, Mapping):
        raise InvalidResult(
            f"the experiment has objectives {names}: the objective must return a dict with those keys, "
            f"got {type(value).__name__} {show_value(value)}"
        )
    missing = [n for n in names if n not in value]
    if missing:
        keys = sorted(k if isinstance(k, str) else show_value(k) for k in value)
        raise InvalidResult(f"objective(s) {missing} missing from the returned dict (keys {keys}); "
                            f"the experiment has objectives {names}")
    if "objective" in value:
        raise InvalidResult(f"the returned dict has the key(s) ['objective'], but the experiment has objectives "
                            f"{names}: return each by its name")
    values = []
    for name in names:
        try:
            number = checked_number(name, value[name])
        except InvalidResult as exc:
            raise InvalidResult(str(exc).replace("metric", "objective", 1)) from None
        if not math.isfinite(number):
            raise InvalidResult(f"objective {name!r} is {number}")
        values.append(number)
    metrics, constraints = _rest(value, names)
    return tuple(values), metrics, constraints


def parse_result(value: Any, params: Collection[str] = (), objectives: Sequence[str] = ()) -> Result:
    """Read an objective's return value into a :class:`Result`.

    Accepted: a number (Python or numpy, or a one-element numeric array); a dict of metrics
    with the key ``"objective"`` (and optionally ``"constraints"``); or a list of
    ``{"name", "type", "value"}`` dicts (Orion's format) with exactly one entry of type
    ``"objective"`` (and any number of type ``"constraint"``, in order).  With
    ``objectives``, a dict with one key per objective instead of ``"objective"``.  A
    :class:`Result` is taken as it is, once its names and constraints are checked.

    Constraints (Optuna's convention) are a list of finite numbers, the trial being feasible
    when every one is ``<= 0``; they land in :attr:`Result.constraints`.

    Parameters
    ----------
    value : object
        What the objective returned.
    params : collection of str, optional
        The space's parameter names.  A metric named like a parameter is refused (it would
        overwrite the parameter's values in the history), as are reserved names
        (:data:`RESERVED`, :data:`RESERVED_PREFIXES`) and names that cannot be stored.
    objectives : sequence of str, optional
        The names of an experiment's several objectives (``objectives=``): each must be a
        key of the returned dict, with a finite value; they land in :attr:`Result.values`,
        in this order, and ``"objective"`` may not be a key.

    Returns
    -------
    Result

    Raises
    ------
    InvalidResult
        With a message that says what was returned and what is expected, or which names
        clash.  No other exception comes out of this function.
    """
    try:
        return _parse(value, params, objectives)
    except InvalidResult:
        raise
    except Exception as exc:  # a result built to confuse (a Mapping that raises, an odd __eq__, ...)
        raise InvalidResult(f"objective returned {type(value).__name__} {show_value(value)}, which could not be "
                            f"read as a result ({type(exc).__name__}: {exc})") from None


def _parse(value: Any, params: Collection[str], objectives: Sequence[str]) -> Result:
    constraints: list[float] = []
    values: tuple[float, ...] = ()
    if isinstance(value, Result):  # read already (ObjectiveVector): checked as any other result
        objective = checked_number("objective", value.objective)
        metrics = {_name(k): checked_number(str(k), v) for k, v in value.metrics.items()}
        values = tuple(checked_number(f"values[{i}]", v) for i, v in enumerate(value.values))
        constraints = _constraints(list(value.constraints))
    elif objectives:
        values, metrics, constraints = _objective_values(value, objectives)
        objective = math.nan
    elif isinstance(value, Mapping):
        if "objective" not in value:
            keys = sorted(show_value(k) if not isinstance(k, str) else k for k in value)
            raise InvalidResult(f"a dict result needs the key 'objective', got keys {keys}")
        metrics, constraints = _rest(value, ("objective",))
        objective = checked_number("objective", value["objective"])
    elif isinstance(value, (list, tuple)):
        objective, metrics, n_objectives = math.nan, {}, 0
        for entry in value:
            if not (isinstance(entry, Mapping) and {"name", "type", "value"} <= set(entry)):
                raise InvalidResult(
                    f"a list result holds {{'name', 'type', 'value'}} dicts, got {show_value(entry)}"
                )
            name = _name(entry["name"])
            number = checked_number(name, entry["value"])
            kind = entry["type"]
            if not isinstance(kind, str):
                raise InvalidResult(f"the 'type' of list entry {name!r} must be a string ('objective', "
                                    f"'constraint' or another), got {type(kind).__name__} {show_value(kind)}")
            if kind == "constraint":
                constraints.extend(_constraints([number]))
            elif kind == "objective":
                objective, n_objectives = number, n_objectives + 1
            else:
                if name in metrics:
                    raise InvalidResult(f"metric {name!r} is given twice in the list result")
                metrics[name] = number
        if n_objectives != 1:
            raise InvalidResult(f"a list result needs exactly one entry of type 'objective', got {n_objectives}")
    else:
        try:
            objective, metrics = checked_number("objective", value), {}
        except InvalidResult as exc:
            if "too large" in str(exc):
                raise
            raise InvalidResult(
                f"objective returned {type(value).__name__} {show_value(value)}; expected a number, "
                "a dict with key 'objective', or a list of {'name', 'type', 'value'} dicts"
            ) from None
    params = frozenset(params)
    problems = [p for p in (name_problem(n, params) for n in metrics) if p is not None]
    if problems:
        raise InvalidResult("; ".join(problems) + " (the trial is broken; nothing of it is stored)")
    return Result(objective, metrics, tuple(constraints), values)
