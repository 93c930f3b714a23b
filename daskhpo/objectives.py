"""Several objectives: their declaration, and the objective's dict read on the worker.

``build_experiment(..., objectives={"error": "minimize", "latency_ms": "minimize"})``
declares them; the objective returns a dict with those keys (and any other metrics).
:class:`ObjectiveVector` wraps the user's function for the engine: it reads the dict on
the worker (:func:`daskhpo.results.parse_result` with ``objectives=``) into a typed
:class:`~daskhpo.results.Result`, whose values the worker copies into
:attr:`TrialRecord.values <daskhpo.records.TrialRecord.values>`.

In the history each objective is the variable ``objective_<name>`` (:func:`variable`): an
objective may then be called ``error`` or ``status`` without clashing with the history's
bookkeeping variables of those names.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Collection, Mapping
from typing import Any

from .records import direction_sign
from .results import InvalidResult, Result, name_problem, parse_result, show_value

__all__ = ["ObjectiveVector", "check_objectives", "objectives_from_attrs", "variable"]

#: the values a direction may take
DIRECTIONS = ("minimize", "maximize")
#: prefix of the history's variable of each objective
PREFIX = "objective_"


def variable(name: str) -> str:
    """The history's variable of objective ``name``: ``objective_<name>``."""
    return PREFIX + name


def check_objectives(objectives: Any, params: Collection[str] = ()) -> dict[str, str]:
    """``objectives`` once checked: an ordered dict of name -> ``"minimize"`` / ``"maximize"``.

    Parameters
    ----------
    objectives : mapping
        Objective name -> direction, at least two of them.
    params : collection of str
        The space's parameter names (an objective may not take one).

    Raises
    ------
    ValueError
        Naming the objective, for a name that cannot be stored (``objective_<name>`` the
        name of a parameter, a character a variable name cannot hold, ``"objective"``
        itself) or a direction that is neither
        ``"minimize"`` nor ``"maximize"``; or when fewer than two are given.
    """
    if not isinstance(objectives, Mapping):
        raise ValueError(
            "objectives must be a dict of name -> 'minimize' or 'maximize', "
            f"e.g. {{'error': 'minimize', 'latency_ms': 'minimize'}}; got {type(objectives).__name__} {show_value(objectives)}"
        )
    if len(objectives) < 2:
        raise ValueError(
            f"objectives={dict(objectives)!r} names {len(objectives)} objective(s); give two or more "
            "(for one objective use direction='minimize' or 'maximize')"
        )
    out: dict[str, str] = {}
    for name, direction in objectives.items():
        if not isinstance(name, str):
            raise ValueError(f"objective names must be strings, got {type(name).__name__} {show_value(name)}")
        if name == "objective":
            raise ValueError("objective name 'objective' is the single objective's; name each objective of "
                             "objectives= after what it measures (e.g. 'error', 'latency_ms')")
        problem = name_problem(variable(name), params) if name else "an empty name cannot be stored"
        if problem is not None:
            raise ValueError(f"objective {name!r}: its history variable {problem.replace('metric ', '', 1)}")
        if not isinstance(direction, str) or direction not in DIRECTIONS:
            raise ValueError(f"objective {name!r}: direction must be 'minimize' or 'maximize', got {direction!r}")
        out[name] = direction
    return out


def objectives_from_attrs(attrs: Mapping[str, Any]) -> dict[str, str]:
    """The objectives stored in a history's attrs (attr ``objectives``, JSON), or ``{}``."""
    text = attrs.get("objectives")
    return dict(json.loads(text)) if text else {}


def signs(objectives: Mapping[str, str]) -> tuple[float, ...]:
    """Each objective's sign: ``sign * value`` is lower when better."""
    return tuple(direction_sign(d) for d in objectives.values())


class ObjectiveVector:
    """The user's objective, returning a dict with every declared objective.

    Called on the worker as the objective itself; it returns the dict read into a
    :class:`~daskhpo.results.Result` whose :attr:`~daskhpo.results.Result.values` hold the
    objectives in the declared order (and whose ``objective`` is NaN), which the engine's
    parsing takes as it is.

    Parameters
    ----------
    fn : callable
        The user's objective.
    names : sequence of str
        The declared objectives, in order.

    Raises
    ------
    daskhpo.results.InvalidResult
        (The trial is then ``broken`` with the message.)  When the result is not a dict,
        lacks an objective, gives a value that is not a real number or is not finite, or
        has the key ``"objective"`` or ``"objective_<name>"`` (the history's variable of
        an objective).
    """

    def __init__(self, fn: Callable[..., Any], names: Collection[str]) -> None:
        self.fn = fn
        self.names = tuple(names)
        # the user's function's name and module, for messages such as an unpicklable objective's
        functools.update_wrapper(self, fn, updated=())

    def __call__(self, **kwargs: Any) -> Result:
        # the worker checks the metric names against the trial's parameters (kwargs also holds
        # the fixed keyword arguments, which a metric may share a name with)
        return self.check(self.fn(**kwargs))

    def check(self, value: Any, params: Collection[str] = ()) -> Result:
        """``value`` read as a result of these objectives (``params``: the space's parameter names)."""
        if isinstance(value, Mapping):
            clash = [variable(n) for n in self.names if variable(n) in value]
            if clash:  # the metric would take the objective's variable in the history
                raise InvalidResult(f"the returned dict has the key(s) {clash}, but the experiment has objectives "
                                    f"{list(self.names)}: return each by its name")
        return parse_result(value, params, objectives=self.names)
