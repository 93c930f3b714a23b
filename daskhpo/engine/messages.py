"""The events and instructions of the loop's state machine (:mod:`daskhpo.engine.state`).

Events come in (the driver's own here; the executor's in :mod:`daskhpo.engine.executor`),
instructions go out: plain frozen dataclasses, decisions as data, so that a test reads
what :class:`~daskhpo.engine.state.LoopState` decided without running anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..records import ReportRecord, TrialRecord
from .drain import DrainRequest

__all__ = [
    "Planned",
    # events
    "Start", "Suggested", "Decided", "DrainRequested", "Idle", "Ended",
    # instructions
    "Submit", "Retire", "Cancel", "Prune", "Release", "Report", "Record", "QuarantineWorker", "SetAlarm",
    "RequestSuggestions", "TakeSuggestions", "WaitForModel", "Raise", "Finish",
]


@dataclass(frozen=True)
class Planned:
    """A trial to run, as ``suggest`` hands it to the loop.

    Attributes
    ----------
    trial : int
    params : dict
    parent, checkpoint_from : int or None
        Lineage, copied into the record.
    checkpoint : tuple or None
        The stored checkpoint it starts from, shipped to its worker.
    """

    trial: int
    params: dict[str, Any]
    parent: int | None = None
    checkpoint_from: int | None = None
    checkpoint: tuple[str, Any] | None = None


# -- events of the driver ---------------------------------------------------------------
@dataclass(frozen=True)
class Start:
    """The run starts: fill the slots."""


@dataclass(frozen=True)
class Suggested:
    """The answer to :class:`RequestSuggestions` or :class:`TakeSuggestions`.

    ``nothing``: the optimizer has nothing more right now; ``outstanding``: trials the
    model still owes (requested, not yet taken); ``requested``: the answer to a request
    (else to a take).
    """

    plans: tuple[Planned, ...] = ()
    nothing: bool = False
    outstanding: int = 0
    requested: bool = False


@dataclass(frozen=True)
class Decided:
    """A decision (``"prune"``, ``"continue"``; ``None``: it comes later) on a report of ``trial``.

    ``key`` is set for the answer to a :class:`Report` (the attempt that reported); a
    late decision (:meth:`~daskhpo.engine.loop.Engine.decide_later`) has none.
    """

    trial: int
    decision: str | None
    key: str | None = None


@dataclass(frozen=True)
class DrainRequested:
    """Stop gracefully (see :mod:`daskhpo.engine.drain`)."""

    request: DrainRequest


@dataclass(frozen=True)
class Idle:
    """Nothing runs: judge what is held, or wait for the model."""


@dataclass(frozen=True)
class Ended:
    """The run ends, however: what is still held is recorded broken."""


# -- instructions -----------------------------------------------------------------------
@dataclass(frozen=True)
class Submit:
    """Start attempt ``attempt`` of ``plan`` as ``key``, if possible not on worker ``avoid``.

    ``workers``: run it only on one of these (the workers it fits on before their end);
    ``None``: anywhere.
    """

    plan: Planned
    key: str
    attempt: int
    avoid: str | None = None
    workers: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Retire:
    """``worker`` takes nothing new and leaves once idle (nothing of this run runs there)."""

    worker: str


@dataclass(frozen=True)
class Cancel:
    """Give up attempt ``key``."""

    key: str


@dataclass(frozen=True)
class Prune:
    """Stop attempt ``key`` (running on ``worker``) at its next report."""

    key: str
    worker: str | None


@dataclass(frozen=True)
class Release:
    """Let attempt ``key``, waiting on its report at ``step``, go on."""

    key: str
    worker: str | None
    step: float


@dataclass(frozen=True)
class Report:
    """Hand ``report`` to ``on_report``; ``decide``: answer with a :class:`Decided` for ``key``."""

    report: ReportRecord
    params: dict[str, Any]
    key: str
    decide: bool = True


@dataclass(frozen=True)
class Record:
    """Record a finished trial (``record(trial, checkpoint)``)."""

    trial: TrialRecord
    checkpoint: Any = None


@dataclass(frozen=True)
class QuarantineWorker:
    """Send nothing more to ``worker``; ``entry`` is its quarantine record (for ``on_quarantine``)."""

    worker: str
    entry: dict[str, Any]


@dataclass(frozen=True)
class SetAlarm:
    """Wake the loop after ``delay`` seconds of the executor's clock (a drain's deadline)."""

    delay: float


@dataclass(frozen=True)
class RequestSuggestions:
    """Ask for ``n`` more trials (``n <= 0``: none), then answer with what is ready."""

    n: int


@dataclass(frozen=True)
class TakeSuggestions:
    """Answer with the suggestions ready now (those of a model working on its own).

    ``ask_nothing``: also ask the model whether it has nothing more (which clears its flag).
    """

    ask_nothing: bool = True


@dataclass(frozen=True)
class WaitForModel:
    """Nothing runs: wait (up to ``timeout`` seconds) for the model to suggest."""

    timeout: float


@dataclass(frozen=True)
class Raise:
    """End the run with ``error``."""

    error: BaseException


@dataclass(frozen=True)
class Finish:
    """A drain ended the run: ``drained`` is its request, ``abandoned`` the trials cancelled.

    ``timeout``: the drain was the run's own, its ``timeout`` reached (not a request).
    """

    drained: DrainRequest
    abandoned: list[int]
    timeout: bool = False
