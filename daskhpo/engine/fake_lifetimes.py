"""A fake cluster whose workers come and go on schedule: walltimes, preemptions, replacements.

:class:`FakeLifetimeExecutor` is a :class:`~daskhpo.engine.fake.FakeExecutor` with named
workers (``workers=k``), each living inside a simulated batch job:

* it ends ``lifetime`` virtual seconds after it joined (its walltime), or earlier when
  ``preempt`` says it is preempted;
* ``grace`` seconds before its end it is *signalled* (Slurm's ``--signal`` before the
  walltime, the ``SIGTERM`` before a preemption's kill): each trial running there is asked
  to checkpoint and stop (:func:`daskhpo.preempt_trials`), so its next report within the
  grace ends the attempt ``preempted`` with that report's checkpoint (the worker's own rule,
  :func:`~daskhpo.engine.worker.cut_short`); a trial with no report in time dies with the
  worker (a lost attempt, :class:`~daskhpo.engine.executor.Failed`) and starts again from
  zero;
* ``replace``: a worker that leaves (its end, or retired by the loop) is replaced by a new
  one after that many seconds, as an adaptive cluster resubmits jobs.

It sends :class:`~daskhpo.engine.executor.WorkersChanged` (the walltime ends, and a
preempted worker's end once signalled) and :class:`~daskhpo.engine.executor.Started`, and
has ``retire``.  With ``aware=False`` it is today's cluster: no ends sent, no signal; workers
just die at their end with their trials.  The decisions stay in the state machine
(:mod:`daskhpo.engine.lifetimes`): this is only a transport.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from ..records import PREEMPTED
from .executor import Completed, ExecutorEvent, Failed, Reported, Started, WorkersChanged
from .fake import FakeExecutor
from .worker import TrialTask

__all__ = ["FakeLifetimeExecutor"]


class _Signal:
    def __init__(self, worker: str) -> None:
        self.worker = worker


class _Leave(_Signal):
    pass


class _Join:
    pass


_INTERNAL = (_Signal, _Join)


class FakeLifetimeExecutor(FakeExecutor):
    """A fake executor whose workers have walltimes and may be preempted.

    Parameters
    ----------
    fn, **kwargs
        As for :class:`~daskhpo.engine.fake.FakeExecutor`; ``workers`` is required.
    lifetime : float or callable
        Virtual seconds a worker lives from when it joins: a number, or
        ``lifetime(worker) -> float`` (e.g. shorter for the first workers: staggered starts).
    preempt : callable, optional
        ``preempt(worker) -> float or None``: seconds after joining at which that worker is
        preempted (if before its walltime), ``None`` for never.
    grace : float, default 60.0
        Seconds from the signal to the kill.
    replace : float, optional
        Seconds after a worker leaves until its replacement joins; ``None``: not replaced.
    aware : bool, default True
        Send the workers' ends and signal their trials; ``False``: workers die unannounced.
    """

    def __init__(self, fn: Callable[..., Any], *, lifetime: float | Callable[[str], float],
                 preempt: Callable[[str], float | None] | None = None, grace: float = 60.0,
                 replace: float | None = None, aware: bool = True, **kwargs: Any) -> None:
        if kwargs.get("workers") is None:
            raise ValueError("FakeLifetimeExecutor needs workers= (named workers, each with its lifetime)")
        if not grace >= 0:
            raise ValueError(f"grace must be non-negative seconds, got {grace!r}")
        super().__init__(fn, **kwargs)
        self.lifetime = lifetime if callable(lifetime) else (lambda worker, t=float(lifetime): t)
        self.preempt, self.grace, self.replace, self.aware = preempt, float(grace), replace, aware
        #: worker -> (its walltime end, when it is killed), virtual seconds
        self.ends: dict[str, tuple[float, float]] = {}
        #: workers signalled (their end announced)
        self.signalled: set[str] = set()
        #: workers retired and still busy (they leave once idle)
        self._leaving: set[str] = set()
        #: counts: attempts preempted (stopped at a report), killed with their worker
        self.preempted = self.killed = 0
        #: worker-seconds each worker was connected (utilization's denominator), by worker
        self.lived: dict[str, float] = {}

    def open(self) -> None:
        super().open()
        self._leaving = set()
        for worker in self.workers:
            self._schedule(worker)
        self._changed()

    def _schedule(self, worker: str) -> None:
        if worker not in self.ends:
            life = float(self.lifetime(worker))
            cut = self.preempt(worker) if self.preempt is not None else None
            kill = self.now + (life if cut is None else min(life, float(cut)))
            self.ends[worker] = (self.now + life, kill)
            self.lived[worker] = -self.now
        _, kill = self.ends[worker]
        if self.aware:
            self._at(max(self.now, kill - self.grace), "", _Signal(worker))
        self._at(kill, "", _Leave(worker))

    def _changed(self) -> None:
        if self.aware:
            ends = {w: self.ends[w][1] if w in self.signalled else self.ends[w][0] for w in self.workers}
            self._at(self.now, "", WorkersChanged(ends))

    def _start(self, task: TrialTask, worker: str) -> None:
        super()._start(task, worker)
        self._at(self.now, task.key, Started(task.key, worker))

    def retire(self, worker: str) -> None:
        """``worker`` takes nothing new, and leaves once idle."""
        super().retire(worker)
        self._leaving.add(worker)
        self._gone_if_idle()

    def next_event(self) -> ExecutorEvent:
        """The earliest event; the workers' signals, ends and replacements happen on the way."""
        while self._events and isinstance(self._events[0][3], _INTERNAL):
            event = self._events[0][3]
            self.now = max(self.now, self._events[0][0])
            heapq.heappop(self._events)
            if isinstance(event, _Join):
                worker = self.add_worker()
                self._schedule(worker)
                self._changed()
                self._dispatch()
            elif isinstance(event, _Leave):
                self._leave(event.worker)
            else:
                self._signal(event.worker)
        event = super().next_event()
        if isinstance(event, (Completed, Failed)):
            self._gone_if_idle()
        return event

    def _signal(self, worker: str) -> None:
        """Checkpoint and stop: each trial there stops at its next report before the kill."""
        if worker not in self.ends or worker in self.signalled:
            return
        self.signalled.add(worker)
        self._changed()
        key = self._busy.get(worker)
        outcome = self._running.get(key) if key is not None else None
        if outcome is None:
            return
        _, kill = self.ends[worker]
        upcoming = sorted(e[0] for e in self._events if e[2] == key and isinstance(e[3], Reported))
        within = [t for t in upcoming if t < kill]
        if within:
            self.preempted += 1
            self._cut(key, outcome, within[0], len(outcome.reports) - len(upcoming) + 1, PREEMPTED)

    def _leave(self, worker: str) -> None:
        """The job ends: its worker is gone, with whatever still runs there."""
        if worker not in self.ends:
            return
        key = self._busy.pop(worker, None)
        if key is not None:  # killed with its worker: lost, runs again from zero
            self.killed += 1
            self._drop(key)
            self._running.pop(key, None)
            self._at(self.now, key, Failed(key, f"KilledWorker: worker {worker} reached its end (simulated)"))
        self._gone(worker)

    def _gone_if_idle(self) -> None:
        for worker in list(self._leaving):
            if worker not in self._busy:
                self._gone(worker)

    def _gone(self, worker: str) -> None:
        self._leaving.discard(worker)
        if worker in self.workers:
            self.workers.remove(worker)
        ends = self.ends.pop(worker, None)
        if ends is None:
            return
        self.lived[worker] += self.now
        self._drop_internal(worker)
        self._changed()
        if self.replace is not None:
            self._at(self.now + self.replace, "", _Join())

    def _drop_internal(self, worker: str) -> None:
        self._events = [e for e in self._events if not (isinstance(e[3], _Signal) and e[3].worker == worker)]
        heapq.heapify(self._events)

    def connected_seconds(self) -> float:
        """Worker-seconds of every worker connected so far (up to now)."""
        return sum(v + (self.now if w in self.ends else 0.0) for w, v in self.lived.items())
