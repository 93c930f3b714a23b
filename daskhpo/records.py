"""The typed records of an experiment, the same from the worker to the disk.

Three kinds of event happen to a trial, and each is one frozen dataclass:

:class:`TrialStarted`
    The engine submitted the trial (or submitted it again after its worker was lost).
:class:`ReportRecord`
    The running trial reported an intermediate result (:func:`daskhpo.report`).
:class:`TrialRecord`
    The trial finished: completed, pruned, broken, timed out or lost.

Every event that reaches the history gets a sequence number (``seq``), in the order the
experiment saw it; resume replays events in that order.  Records are plain data: their
:meth:`to_json` / ``from_json`` forms are what the journal holds, line by line, and no
field changes its name or meaning between the worker, the engine, the optimizer's view
(:class:`daskhpo.Trial` is derived from a record) and the file.

This module depends on nothing else in the package, so that every layer may use it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = ["TrialRecord", "ReportRecord", "TrialStarted", "FINISHED", "STATUSES", "PREEMPTED", "direction_sign",
           "event_from_json"]

#: statuses of a finished trial that count towards ``max_trials``
FINISHED = ("completed", "pruned")
#: every status a finished trial may have
STATUSES = ("completed", "pruned", "broken", "timeout", "lost")
#: the status of an *attempt* that stopped at a report because its worker is leaving
#: (:class:`daskhpo.TrialPreempted`): never a stored trial's status, never counted broken;
#: the engine runs the trial again from the checkpoint the attempt carried
PREEMPTED = "preempted"


def direction_sign(direction: str | None) -> float:
    """1.0 to minimize, -1.0 to maximize: ``sign * objective`` is lower when better."""
    return -1.0 if direction == "maximize" else 1.0


@dataclass(frozen=True)
class TrialRecord:
    """One finished trial.

    Attributes
    ----------
    trial : int
        The trial id (the history's ``trial`` coordinate).
    params : dict
        The configuration that ran, one value per dimension of the space.
    status : str
        One of :data:`STATUSES`.
    objective : float
        The minimized value; NaN unless the trial completed (or was pruned after reporting).
    metrics : dict
        Every other number the objective returned (or, for a pruned trial, reported last).
    submitted, started, ended : float or None
        Epoch seconds: handed to the cluster, started on its worker, finished.
    worker : str or None
        Address of the worker that ran it.
    gpu : str or None
        ``CUDA_VISIBLE_DEVICES`` on that worker.
    attempts : int
        Times it was run (more than one when a worker was lost mid-trial).
    error : str or None
        Why a trial that did not complete failed (a traceback, a message).
    parent : int or None
        The trial it continues in the algorithm's bookkeeping (:attr:`Suggestion.parent`).
    checkpoint_from : int or None
        The trial whose checkpoint it started from (:attr:`Suggestion.checkpoint`).
    last_step : float
        The last step it reported (NaN when it reported nothing).
    seq : int
        Position of this event in the experiment's event log (-1 until recorded).
    constraints : tuple of float
        The constraint values the objective returned (``{"objective": v, "constraints":
        [...]}``); the trial is feasible when every one is ``<= 0`` (see :attr:`feasible`).
    values : tuple of float
        For an experiment with several objectives (``objectives=``), their values in the
        experiment's order of objectives, as the objective returned them (``objective``
        is then NaN); empty otherwise.
    preempted : tuple of (float, float)
        One ``(time, step)`` per preemption of the trial (its worker left and the trial
        stopped at a report, to go on elsewhere from its checkpoint): epoch seconds when
        that attempt stopped, and the last step it had reported (NaN for none).  The
        steps before and after each hand-over are in the trial's reports; ``attempts``
        counts the preempted attempts too.

    The worker fills ``objective``, ``values``, ``constraints`` and ``metrics`` from the
    objective's return value (:func:`daskhpo.results.parse_result`); no field is ever
    carried inside another (no metric stands for a constraint or an objective).
    """

    kind: ClassVar[str] = "trial"

    trial: int
    params: dict[str, Any]
    status: str
    objective: float = math.nan
    metrics: dict[str, float] = field(default_factory=dict)
    submitted: float | None = None
    started: float | None = None
    ended: float | None = None
    worker: str | None = None
    gpu: str | None = None
    attempts: int = 1
    error: str | None = None
    parent: int | None = None
    checkpoint_from: int | None = None
    last_step: float = math.nan
    seq: int = -1
    constraints: tuple[float, ...] = ()
    values: tuple[float, ...] = ()
    preempted: tuple[tuple[float, float], ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the trial completed with a finite objective (every one, with several)."""
        if self.values:
            return self.status == "completed" and all(math.isfinite(v) for v in self.values)
        return self.status == "completed" and math.isfinite(self.objective)

    @property
    def feasible(self) -> bool:
        """Whether every constraint is ``<= 0`` (so, true for a trial without constraints)."""
        return all(c <= 0 for c in self.constraints)

    @property
    def duration(self) -> float:
        """Seconds from its start on the worker to its end (NaN when it never started)."""
        if self.started is None or self.ended is None:
            return math.nan
        return self.ended - self.started

    def replace(self, **changes: Any) -> TrialRecord:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-serializable dict (one journal line)."""
        out = {"event": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("constraints", "values"):
                if value:  # left out when empty: journal lines of other trials are unchanged
                    out[f.name] = list(value)
                continue
            if f.name == "preempted":
                if value:
                    out[f.name] = [[t, None if math.isnan(s) else s] for t, s in value]
                continue
            out[f.name] = None if isinstance(value, float) and math.isnan(value) else value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrialRecord:
        """Read back :meth:`to_json` (unknown keys are ignored, missing ones defaulted)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        for key in ("objective", "last_step"):
            if kwargs.get(key) is None:
                kwargs.pop(key, None)
        kwargs["params"] = dict(kwargs.get("params") or {})
        kwargs["metrics"] = dict(kwargs.get("metrics") or {})
        kwargs["constraints"] = tuple(float(c) for c in kwargs.get("constraints") or ())
        kwargs["values"] = tuple(math.nan if v is None else float(v) for v in kwargs.get("values") or ())
        kwargs["preempted"] = tuple((float(t), math.nan if s is None else float(s))
                                    for t, s in kwargs.get("preempted") or ())
        return cls(**kwargs)


@dataclass(frozen=True)
class ReportRecord:
    """An intermediate result of a running trial.

    Attributes
    ----------
    trial : int
        The reporting trial.
    step : float
        The step (epoch, resource used so far) the values belong to.
    values : dict
        The reported numbers by name; ``"objective"`` is the value to minimize (NaN when
        the report had none).
    seq : int
        Position in the experiment's event log (-1 until recorded).
    """

    kind: ClassVar[str] = "report"

    trial: int
    step: float
    values: dict[str, float]
    seq: int = -1

    @property
    def objective(self) -> float:
        """The reported value to minimize (NaN when the report had none)."""
        value = self.values.get("objective")
        return math.nan if value is None else float(value)

    @property
    def metrics(self) -> dict[str, float]:
        """Every reported value but the objective."""
        return {k: v for k, v in self.values.items() if k != "objective"}

    def replace(self, **changes: Any) -> ReportRecord:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON-serializable dict (one journal line); NaN values are left out."""
        values = {k: v for k, v in self.values.items() if not math.isnan(v)}
        return {"event": self.kind, "trial": self.trial, "step": self.step, "values": values, "seq": self.seq}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReportRecord:
        """Read back :meth:`to_json`."""
        values = {str(k): float(v) for k, v in dict(data["values"]).items()}
        return cls(int(data["trial"]), float(data["step"]), values, int(data.get("seq", -1)))


@dataclass(frozen=True)
class TrialStarted:
    """A trial handed to the cluster (again, when ``attempt`` > 1).

    Attributes
    ----------
    trial : int
    params : dict
    attempt : int
    time : float
        Epoch seconds.
    seq : int
    """

    kind: ClassVar[str] = "start"

    trial: int
    params: dict[str, Any]
    attempt: int = 1
    time: float = 0.0
    seq: int = -1

    def replace(self, **changes: Any) -> TrialStarted:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The event as a JSON-serializable dict (one journal line)."""
        return {"event": self.kind, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrialStarted:
        """Read back :meth:`to_json`."""
        return cls(int(data["trial"]), dict(data["params"]), int(data.get("attempt", 1)),
                   float(data.get("time", 0.0)), int(data.get("seq", -1)))


Event = TrialRecord | ReportRecord | TrialStarted
_KINDS: dict[str, Any] = {cls.kind: cls for cls in (TrialRecord, ReportRecord, TrialStarted)}


def event_from_json(data: Mapping[str, Any]) -> Event:
    """Decode one journal line's dict into its typed event.

    Raises
    ------
    ValueError
        For an unknown ``event`` kind or a line missing a required field.
    """
    kind = data.get("event")
    cls = _KINDS.get(kind)
    if cls is None:
        raise ValueError(f"unknown event kind {kind!r}")
    try:
        return cls.from_json(data)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed {kind!r} event: {exc}") from None
