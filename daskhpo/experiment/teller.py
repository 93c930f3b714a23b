"""What the optimizer is told: the boundary between the user's values and the minimized ones.

Optimizers always minimize one objective (or a vector of them).  The teller signs each
finished trial and each report by the experiment's direction(s), and penalizes infeasible
trials for algorithms that do not model constraints themselves.  It is the one place
that makes the optimizer's view of a trial: the live run, a resume's replay and
:attr:`daskhpo.Experiment.trials` all go through it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..objectives import signs
from ..optimizers import Report, Trial, optimizer_class
from ..records import ReportRecord, TrialRecord, direction_sign

__all__ = ["DIRECTIONS", "Teller", "as_report", "as_trial", "check_direction", "handles_constraints"]

#: the values of ``direction``
DIRECTIONS = ("minimize", "maximize")


def check_direction(direction: Any) -> str:
    """``direction`` once checked.

    Raises
    ------
    ValueError
        Naming ``direction``, for anything but ``"minimize"`` or ``"maximize"``.
    """
    if not isinstance(direction, str) or direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
    return direction


def as_trial(record: TrialRecord, sign: float = 1.0, value_signs: Sequence[float] = ()) -> Trial:
    """A finished trial's record as the optimizers see it, before any penalty (see :class:`Teller`).

    ``sign`` is -1 for a maximized experiment: optimizers always minimize, so they are told
    the negated objective (the history keeps the user's own value).  ``value_signs`` does
    the same for each of several objectives (:attr:`Trial.values`).  Metrics and
    constraints are the record's own.
    """
    return Trial(
        record.trial,
        dict(record.params),
        record.status,
        sign * record.objective,
        dict(record.metrics),
        parent=record.parent,
        checkpoint=record.checkpoint_from,
        last_step=record.last_step,
        values=tuple(s * v for s, v in zip(value_signs or [1.0] * len(record.values), record.values)),
        constraints=tuple(record.constraints),
    )


def as_report(report: ReportRecord, params: Mapping[str, Any], sign: float = 1.0) -> Report:
    """A report as the optimizers see it (its objective times ``sign``, see :func:`as_trial`)."""
    return Report(report.trial, dict(params), report.step, sign * report.objective, report.metrics)


class Teller:
    """What the optimizer is told: the experiment's boundary between the user's values and
    the minimized ones.

    * Objectives (and reported ones) are multiplied by the direction's sign.
    * A completed trial that is infeasible (a constraint ``> 0``) is told as completed with a
      penalized objective: the worst (signed) objective of every completed trial told so far,
      this one included, plus the sum of its constraint violations.  So every algorithm
      ranks it below every trial told before it, without knowing of constraints; it still
      carries its constraints (:attr:`Trial.constraints`).  An algorithm that models
      constraints itself (:attr:`Optimizer.handles_constraints`, e.g. tpe and gp) is told the
      trial's own objective instead, and reads the constraints from :attr:`Trial.constraints`.
      Deterministic in the order of events, so resume (which tells the same events in the
      same order) rebuilds the same values.
    * With several objectives, each value is signed by its own direction
      (:attr:`Trial.values`), and an infeasible trial is penalized in each objective the
      same way, against that objective's worst value so far.
    """

    def __init__(self, direction: str, handles_constraints: bool = False,
                 objectives: Mapping[str, str] | None = None) -> None:
        self.sign = direction_sign(direction)
        self.worst = -math.inf
        self.penalize = not handles_constraints
        self.signs = signs(objectives or {})
        self.worst_values = [-math.inf] * len(self.signs)

    def trial(self, record: TrialRecord) -> Trial:
        trial = as_trial(record, self.sign, self.signs)
        if trial.values:
            if trial.ok:
                self.worst_values = [max(w, v) for w, v in zip(self.worst_values, trial.values)]
                if self.penalize and not record.feasible:
                    violation = sum(max(c, 0.0) for c in record.constraints)
                    trial = dataclasses.replace(trial, values=tuple(w + violation for w in self.worst_values))
            return trial
        if record.status == "completed" and math.isfinite(trial.objective):
            self.worst = max(self.worst, trial.objective)
            if self.penalize and not record.feasible:
                violation = sum(max(c, 0.0) for c in record.constraints)
                trial = dataclasses.replace(trial, objective=self.worst + violation)
        return trial

    def report(self, report: ReportRecord, params: Mapping[str, Any]) -> Report:
        return as_report(report, params, self.sign)

    def replay(self, warm: Iterable[TrialRecord], events: Iterable[TrialRecord | ReportRecord],
               tell: Any = None, decide: Any = None) -> list[Trial]:
        """Tell ``warm`` then ``events`` in their order, as a fresh optimizer hears them.

        Parameters
        ----------
        warm : iterable of TrialRecord
            A warm start's trials, told before anything else.
        events : iterable of TrialRecord or ReportRecord
            The experiment's own events in the order they happened.
        tell, decide : callable, optional
            Receive each told :class:`Trial` and each :class:`Report` (an optimizer's
            ``tell`` and ``report``).

        Returns
        -------
        list of Trial
            The experiment's own trials (not the warm start's) as told.
        """
        events = list(events)
        params = {e.trial: e.params for e in events if isinstance(e, TrialRecord)}
        for record in warm:
            told = self.trial(record)
            if tell is not None:
                tell(told)
        own = []
        for event in events:
            if isinstance(event, TrialRecord):
                told = self.trial(event)
                own.append(told)
                if tell is not None:
                    tell(told)
            elif decide is not None:
                decide(self.report(event, params[event.trial]))
        return own


def handles_constraints(optimizer: Any, algorithm: str | None = None) -> bool:
    """Whether the optimizer (or, without one, the registered ``algorithm``) models constraints."""
    if optimizer is not None:
        return bool(getattr(optimizer, "handles_constraints", False))
    try:
        return bool(optimizer_class(algorithm).handles_constraints) if algorithm else False
    except (ValueError, KeyError, TypeError):  # an optimizer object's class, not registered
        return False
