"""Helpers for programs run by ``daskhpo hunt``, and Orion-style entry points.

A Python training script tuned with ``daskhpo hunt`` ends with::

    from daskhpo.integrations.client import report_results
    report_results(validation_loss)            # or {"objective": loss, "accuracy": acc}

and may report intermediate results (so that ASHA or Hyperband can stop it early)::

    from daskhpo.integrations.client import report_intermediate
    report_intermediate(step=epoch, objective=loss)

``create_experiment`` and ``build_experiment`` are here too, so that scripts written for
``orion.client`` run with ``orion.client`` replaced by ``daskhpo.integrations.client``.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

from ..experiment import build_experiment, create_experiment
from .hunt import RESULTS_ENV

__all__ = ["report_results", "report_objective", "report_intermediate", "create_experiment", "build_experiment"]


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def report_results(value: Any) -> None:
    """Hand the trial's result to ``daskhpo hunt``.

    Parameters
    ----------
    value : float, dict or list
        A number to minimize, a dict of metrics with the key ``"objective"``, or Orion's
        list of ``{"name", "type", "value"}`` dicts.  It is written as JSON to the file
        named by the environment variable ``DASKHPO_RESULTS``.

    Raises
    ------
    RuntimeError
        When the program does not run under ``daskhpo hunt`` (``DASKHPO_RESULTS`` unset):
        the result would otherwise be lost without a word.
    TypeError
        For a value that JSON cannot hold.
    """
    path = os.environ.get(RESULTS_ENV)
    if not path:
        raise RuntimeError(
            f"report_results(): the environment variable {RESULTS_ENV} is not set; "
            "run this program through 'daskhpo hunt'"
        )
    text = json.dumps(_plain(value))
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def report_objective(objective: float, **metrics: float) -> None:
    """Shorthand for ``report_results({"objective": objective, **metrics})``."""
    report_results({"objective": objective, **metrics})


def report_intermediate(step: float, objective: float | None = None, **metrics: float) -> None:
    """Report an intermediate result to ``daskhpo hunt`` (a ``report: {...}`` line on stdout).

    Parameters
    ----------
    step : int or float
        The epoch, or the resource used so far.
    objective : float, optional
        The value to minimize at this step.
    **metrics : float
        Other numbers to record at this step.

    Notes
    -----
    When the search decides to stop the trial, ``daskhpo hunt`` terminates the program
    (SIGTERM to its process group, SIGKILL 5 s later).
    """
    values: dict[str, Any] = {"step": _plain(step)}
    if objective is not None:
        values["objective"] = _plain(objective)
    values.update(_plain(metrics))
    for name, number in values.items():
        if not isinstance(number, (int, float)) or isinstance(number, bool) or not math.isfinite(number):
            if name == "objective" and isinstance(number, float):
                continue  # NaN/inf objectives are data
            raise ValueError(f"report_intermediate(): {name} must be a finite number, got {number!r}")
    sys.stdout.write(f"report: {json.dumps(values)}\n")
    sys.stdout.flush()
