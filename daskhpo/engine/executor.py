"""What the loop needs from a cluster: the executor interface and the events it emits.

An executor runs :class:`~daskhpo.engine.worker.TrialTask` s somewhere and tells the loop
what happened, one event at a time, from :meth:`Executor.next_event`:

:class:`Completed`
    An attempt ran to its end on a worker (whatever its status: the objective's errors
    are data in the outcome).
:class:`Failed`
    An attempt failed outside the objective: its worker died, the task was cancelled.
:class:`Reported`
    A running trial reported an intermediate result.
:class:`Rerun`
    The cluster started an attempt again by itself (its worker left mid-trial).
:class:`Started`
    An attempt started on a worker (optional: where an executor knows it; the loop
    otherwise learns a trial's worker from its reports).
:class:`NoWorkers`
    No worker has been connected for the executor's ``worker_timeout``.
:class:`Wake`
    Only from an executor with the optional ``wake()`` method (callable from any thread):
    the loop should look at its suggestions again.
:class:`WorkersChanged`
    Only from an executor that knows when its workers end (their walltime): the workers
    connected now, each with its end.  The loop then admits a trial only where it fits
    and retires workers near their end (:mod:`daskhpo.engine.lifetimes`).

Two executors implement it: :class:`~daskhpo.engine.dask.DaskExecutor` (a Dask client)
and :class:`~daskhpo.engine.fake.FakeExecutor` (in-process, deterministic, virtual time,
for tests and simulations of thousands of slots), with
:class:`~daskhpo.engine.fake_lifetimes.FakeLifetimeExecutor` for workers with walltimes
and preemptions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # only annotations: the loop imports this module, and nothing of the worker side
    from .worker import TrialOutcome, TrialTask

__all__ = ["Executor", "Wakeable", "Releasing", "Quarantining", "Retiring", "Clocked", "ExecutorEvent", "Completed",
           "Failed", "Reported", "Rerun", "Started", "NoWorkers", "Wake",
           "WorkersChanged"]


@dataclass(frozen=True)
class Completed:
    """Attempt ``key`` ran to its end; ``outcome`` says how."""

    key: str
    outcome: TrialOutcome


@dataclass(frozen=True)
class Failed:
    """Attempt ``key`` failed outside the objective: ``reason`` says why, as text.

    ``lost`` is true when its worker (or the connection to it) was lost, and running it
    again elsewhere may succeed; false for anything else (an objective that cannot be
    unpickled on the worker, a result that cannot travel back): the trial is broken.
    """

    key: str
    reason: str
    error: BaseException | None = None
    lost: bool = True


@dataclass(frozen=True)
class Reported:
    """Attempt ``key`` of trial ``trial`` reported ``values`` at ``step`` from ``worker``.

    ``wait``: the trial waits for the decision on this report (``report(wait=...)``); the
    loop answers a "continue" with the executor's optional ``release(key, worker, step)``.
    """

    key: str
    trial: int
    step: float
    values: dict[str, float]
    worker: str | None = None
    wait: bool = False


@dataclass(frozen=True)
class Rerun:
    """The cluster runs attempt ``key`` again (its worker left mid-trial)."""

    key: str


@dataclass(frozen=True)
class Started:
    """Attempt ``key`` started on ``worker`` (what keeps a worker from retiring under it)."""

    key: str
    worker: str | None


@dataclass(frozen=True)
class NoWorkers:
    """No worker has been connected for ``waited`` seconds.

    ``scheduler`` is set (to the scheduler's address) when the reason is that the
    connection to the scheduler itself was lost (its process died, its node went away).
    """

    waited: float
    scheduler: str | None = None


@dataclass(frozen=True)
class Wake:
    """Nothing happened to any attempt: the loop was woken (by :meth:`wake`) to look again.

    Only executors with the optional ``wake()`` method emit it; the engine then runs the
    optimizer on a background thread (:class:`~daskhpo.engine.suggester.Suggester`),
    which wakes the loop when suggestions are ready.
    """


@dataclass(frozen=True)
class WorkersChanged:
    """The workers connected now, each with the time it ends.

    ``ends`` maps each connected worker's address to the wall-clock epoch time
    (``time.time()``'s scale) at which it will be gone (its job's walltime, a known
    preemption), or ``None`` when unknown.  A worker missing from it has left.  Sent when
    the set of workers or an end changes; executors that know nothing of lifetimes never
    send it (the loop then admits trials anywhere, as before).  ``starts``: when each
    worker's process (or job) started, where known (a worker's whole life, start to end,
    says whether a fresh one of the same kind could fit a trial); a worker missing from it
    counts from when it was first seen.
    """

    ends: Mapping[str, float | None]
    starts: Mapping[str, float] = field(default_factory=dict)


ExecutorEvent = Completed | Failed | Reported | Rerun | Started | NoWorkers | Wake | WorkersChanged


@runtime_checkable
class Executor(Protocol):
    """Runs trial attempts and reports what happens to them: what every executor must have.

    The loop calls :meth:`open` once, then :meth:`submit` and :meth:`next_event` from one
    thread, and :meth:`close` at the end of the run, whatever happened.  What only some
    executors can do is in the capability protocols below (:class:`Wakeable`,
    :class:`Releasing`, :class:`Quarantining`, :class:`Clocked`); the loop uses a
    capability when the executor has it.
    """

    def slots(self) -> int:
        """Attempts the cluster can run at once now (may wait for a first worker)."""

    def open(self) -> None:
        """Start a run: from now on, events are collected."""

    def submit(self, task: TrialTask) -> None:
        """Start an attempt (non-blocking).

        Executors that can restrict where it runs take ``avoid=`` (:class:`Quarantining`)
        and ``workers=`` (:class:`Retiring`) too.
        """

    def next_event(self) -> ExecutorEvent:
        """Wait for the next event of a submitted attempt."""

    def cancel(self, key: str) -> None:
        """Give up attempt ``key``; a :class:`Failed` (or :class:`Completed`) event follows."""

    def stop(self, key: str, worker: str | None) -> None:
        """Ask the running attempt ``key`` to stop at its next report (a prune).

        A report waiting for its decision (``report(wait=...)``) raises at once.
        """

    def close(self) -> None:
        """End the run: cancel what still runs, hold nothing."""


@runtime_checkable
class Wakeable(Protocol):
    """An executor whose :meth:`~Executor.next_event` can be interrupted from any thread.

    The engine then runs the optimizer on a model thread
    (:class:`~daskhpo.engine.suggester.Suggester`), which wakes the loop when suggestions
    or decisions are ready.
    """

    def wake(self) -> None:
        """Make :meth:`~Executor.next_event` return a :class:`Wake` soon (callable from any thread)."""


@runtime_checkable
class Releasing(Protocol):
    """An executor whose trials can wait for the decision on a report (``report(wait=...)``)."""

    def release(self, key: str, worker: str | None, step: float) -> None:
        """Let attempt ``key``, waiting for the decision on its report at ``step``, go on."""


@runtime_checkable
class Quarantining(Protocol):
    """An executor that can keep attempts away from a worker."""

    def submit(self, task: TrialTask, avoid: str | None = None, workers: tuple[str, ...] | None = None) -> None:
        """Start an attempt, if possible not on worker ``avoid``."""

    def quarantine(self, worker: str) -> None:
        """Send no further attempt to ``worker``."""


@runtime_checkable
class Retiring(Protocol):
    """An executor whose workers have lifetimes: it runs attempts only where told, and retires workers.

    Such an executor sends :class:`WorkersChanged`, and should have ``alarm(delay)``
    (:class:`Clocked`): a trial that waits for a worker it fits on is bounded by an alarm.
    """

    def submit(self, task: TrialTask, avoid: str | None = None, workers: tuple[str, ...] | None = None) -> None:
        """Start an attempt; ``workers``: only on one of these (strictly), ``None``: anywhere."""

    def retire(self, worker: str) -> None:
        """``worker`` takes nothing new and leaves once idle (the loop asks only when nothing of its runs there).

        Not a quarantine: the node is not excluded from new jobs; an adaptive cluster
        replaces the worker.
        """


@runtime_checkable
class Clocked(Protocol):
    """An executor with a clock of its own (virtual time in the fake executor) and alarms.

    Without it the loop measures a drain's grace on ``time.monotonic`` and has no alarm.
    """

    def clock(self) -> float:
        """The executor's time, in seconds."""

    def alarm(self, delay: float) -> None:
        """A :class:`Wake` from :meth:`~Executor.next_event` after ``delay`` seconds of :meth:`clock`."""
