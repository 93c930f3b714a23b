"""Short trials: several trials per Dask task.

A trial of a few milliseconds spends most of its time in Dask's per-task overhead
(scheduling, serialization, a round trip to the scheduler).  :class:`PackedDaskExecutor`
sends up to ``trials_per_task`` submitted trials as one task, which runs them one after
the other on its worker (each through :func:`~daskhpo.engine.worker.run_trial`: its own
record, reports, deadline, errors as data), and hands their outcomes to the loop one by one
as if they had been separate tasks.

Trials are packed as the loop submits them: a task leaves when it is full, or when the loop
has nothing more to submit and waits for events (so a pack never waits for trials that
will not come).  Its slots are the workers' threads times ``trials_per_task``, so that a
thread receives a full pack whenever one ends.  Costs: a trial waits in its pack for the
ones before it (fine for short trials, the only ones worth packing); suggestions are made
``trials_per_task`` at a time, so a model learns from results one pack late; when a worker
dies, every trial of its pack is lost (and retried, within ``retries``).

Packed executors opt out of walltime-aware admission (:mod:`daskhpo.engine.lifetimes`):
a pack is placed as a whole and its trials send no ``Started`` of their own, so it sends
no :class:`~daskhpo.engine.executor.WorkersChanged` and the loop never restricts its
trials to workers.  A worker told to leave still preempts its running trials (they resume
from their checkpoints), and a pack cut off at a worker's end is lost and retried.

Used by :meth:`daskhpo.Experiment.workon` with ``trials_per_task=k`` (opt-in).
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from .dask_executor import DaskExecutor
from .executor import Completed, ExecutorEvent, Failed
from .worker import TrialOutcome, TrialTask, claim_attempt, run_trial

__all__ = ["PackedDaskExecutor", "run_pack", "workon_executor"]


def run_pack(
    fn: Callable[..., Any], tasks: list[TrialTask], fn_kwargs: Mapping[str, Any], timeout: float | None = None,
    key: str | None = None,
) -> list[TrialOutcome]:
    """Run the trials of one pack in order, on this worker; their outcomes, in the same order.

    With its task ``key``, the pack claims it first (:func:`~daskhpo.engine.worker.claim_attempt`):
    a pack the scheduler starts again is refused as a whole, its trials lost (and retried).
    """
    if tasks and key is not None:
        claim_attempt(tasks[0].topic, key)
    return [run_trial(fn, task, fn_kwargs, timeout) for task in tasks]


class PackedDaskExecutor(DaskExecutor):
    """A :class:`~daskhpo.engine.DaskExecutor` that runs ``trials_per_task`` trials per task.

    Parameters
    ----------
    client, fn, fn_kwargs, resources, trial_timeout, worker_timeout
        As for :class:`~daskhpo.engine.DaskExecutor` (``trial_timeout`` applies to each
        trial of a pack, from its own start).
    trials_per_task : int
        Most trials per Dask task.
    """

    #: no walltime-aware admission: a pack is placed as a whole (see the module's docstring)
    knows_ends = False

    def __init__(self, client: Any, fn: Callable[..., Any], *, trials_per_task: int = 8, **kwargs: Any) -> None:
        if not isinstance(trials_per_task, int) or trials_per_task < 1:
            raise ValueError(f"trials_per_task must be a positive integer, got {trials_per_task!r}")
        super().__init__(client, fn, **kwargs)
        self.trials_per_task = trials_per_task

    def slots(self) -> int:
        """The workers' threads (with the resources) times ``trials_per_task``."""
        return super().slots() * self.trials_per_task

    def open(self) -> None:
        super().open()
        self._buffer: list[TrialTask] = []
        self._packs: dict[str, list[str]] = {}  # pack key -> its trials' attempt keys
        self._in_pack: dict[str, str] = {}  # attempt key -> pack key
        self._unpacked: deque[ExecutorEvent] = deque()

    def submit(self, task: TrialTask, avoid: str | None = None) -> None:
        """Add the attempt to the next pack; send the pack when it is full.

        ``avoid`` is not honoured per trial (a pack runs where Dask puts it); a quarantined
        worker is retired all the same.  With resources per configuration, a trial asking
        another request than the pack's sends the pack first: a pack's trials ask the same.
        """
        request = self.resources_for(task.params, task.trial)
        if self._buffer and request != self._buffer[0].resources:
            self._flush()  # a pack is one Dask task with one request: trials asking the same
        self._buffer.append(replace(task, topic=self.topic, resources=request))
        if len(self._buffer) >= self.trials_per_task:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        tasks, self._buffer = self._buffer, []
        key = f"daskhpo-pack-{uuid.uuid4().hex}"
        future = self.client.submit(
            run_pack, self._objective, tasks, self.fn_kwargs, self.trial_timeout, key,
            key=key, pure=False, resources=tasks[0].resources,
        )
        self._packs[key] = [t.key for t in tasks]
        for t in tasks:
            self._in_pack[t.key] = key
        self._futures[key] = future
        self._completions.add(future)
        self._wake.set()

    def next_event(self) -> ExecutorEvent:
        """Send the partial pack, then the next event, a pack's completion unpacked per trial."""
        self._flush()
        while not self._unpacked:
            event = super().next_event()
            keys = self._packs.pop(getattr(event, "key", None), None)
            if keys is None:
                return event  # a report, a wake-up, a lost worker
            for k in keys:
                self._in_pack.pop(k, None)
            if isinstance(event, Completed):
                self._unpacked.extend(Completed(k, outcome) for k, outcome in zip(keys, event.outcome))
            else:
                self._unpacked.extend(Failed(k, event.reason, event.error, event.lost) for k in keys)
        return self._unpacked.popleft()

    def cancel(self, key: str) -> None:
        """Cancel the attempt's pack (its other trials are lost with it, and retried)."""
        pending = [t for t in self._buffer if t.key == key]
        if pending:
            self._buffer = [t for t in self._buffer if t.key != key]
            self._unpacked.append(Failed(key, "CancelledError: cancelled"))
            return
        pack = self._in_pack.get(key)
        if pack is not None:
            super().cancel(pack)


def workon_executor(fn: Callable[..., Any], *, trials_per_task: int = 1, **kwargs: Any) -> Callable[[Any], DaskExecutor]:
    """The executor of :meth:`daskhpo.Experiment.workon`, for the client it will be given.

    Its arguments (``resources``, ``trial_timeout``, ``trials_per_task``) are checked now, before
    any cluster starts; the returned factory makes a :class:`DaskExecutor`, or a
    :class:`PackedDaskExecutor` when ``trials_per_task`` > 1 (short trials).
    """
    if trials_per_task == 1:
        DaskExecutor(None, fn, **kwargs)  # checks only: no client is touched before open()
        return lambda client: DaskExecutor(client, fn, **kwargs)
    PackedDaskExecutor(None, fn, trials_per_task=trials_per_task, **kwargs)
    return lambda client: PackedDaskExecutor(client, fn, trials_per_task=trials_per_task, **kwargs)
