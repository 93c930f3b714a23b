"""A fake executor: deterministic, in-process, in virtual time.

It implements :class:`~daskhpo.engine.executor.Executor` without Dask, threads or
sleeping.  Each submitted attempt runs the objective at once, in this process; its events
(reports, then its completion) are scheduled at virtual times drawn from ``duration`` and
handed out in time order by :meth:`FakeExecutor.next_event`, which advances the clock
:attr:`FakeExecutor.now`.  So the engine's logic (slots, retries, time-outs, budgets,
reports and prunes) is tested in milliseconds, and a run of thousands of slots can be
simulated (``benchmarks/``).

Faults are injected per attempt with ``faults(trial, attempt)`` returning ``None``,
``"lose"`` (the worker dies mid-trial: a :class:`~daskhpo.engine.executor.Failed` event)
or ``"rerun"`` (the cluster silently runs the attempt again: a
:class:`~daskhpo.engine.executor.Rerun` event, then the completion half a duration later)
or ``"break"`` (the attempt raises ``RuntimeError("CUDA error: an illegal memory access")``
before the objective runs, as on a faulty node: a ``broken`` outcome).

Worker identities: with ``workers=k`` there are ``k`` workers ``fake-worker-0`` ...; each
attempt runs on the free one idle longest, and ``faults`` may take a third argument, the
worker (``faults(trial, attempt, worker)``), to make one node faulty.
:meth:`FakeExecutor.quarantine` removes a worker; :meth:`FakeExecutor.add_worker` adds one
(an adaptive cluster growing).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Mapping
from typing import Any

from .executor import Completed, ExecutorEvent, Failed, Reported, Rerun, Wake
from .worker import TrialOutcome, TrialTask, cut_short, run_trial

__all__ = ["FakeExecutor", "FakeModelExecutor"]


class FakeExecutor:
    """Runs attempts in this process and replays their events in virtual time.

    Parameters
    ----------
    fn : callable
        The objective, called as ``fn(**params, **fn_kwargs)`` when an attempt is submitted.
    duration : float or callable, default 1.0
        Virtual seconds an attempt runs: a number, or ``duration(params) -> float``.
    slots : int, default 4
        What :meth:`slots` answers (the engine's default ``n_workers``).
    fn_kwargs : dict, optional
    trial_timeout : float, optional
        Virtual seconds after which an attempt is recorded ``timeout``.
    faults : callable, optional
        ``faults(trial, attempt) -> None | "lose" | "rerun" | "break"``, or
        ``faults(trial, attempt, worker)``.
    workers : int, optional
        Named workers ``fake-worker-<i>``, one attempt at a time each (then :meth:`slots`
        is the number of workers left); default one worker, ``fake-worker``, running every
        attempt at once.
    wait_decisions : bool, default False
        Simulate objectives whose reports wait for their decision
        (``daskhpo.report(..., wait=True)``), at no virtual cost: a prune stops the trial
        at the report it decided on.  By default it stops at the next report, as an
        asynchronous decision does.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        duration: float | Callable[[Mapping[str, Any]], float] = 1.0,
        slots: int = 4,
        fn_kwargs: Mapping[str, Any] | None = None,
        trial_timeout: float | None = None,
        faults: Callable[..., str | None] | None = None,
        workers: int | None = None,
        wait_decisions: bool = False,
    ) -> None:
        self.wait_decisions = wait_decisions
        if trial_timeout is not None and not trial_timeout > 0:
            raise ValueError(f"trial_timeout must be positive seconds, got {trial_timeout!r}")
        self.fn = fn
        self.duration = duration if callable(duration) else (lambda params, d=float(duration): d)
        self._slots = slots
        self.fn_kwargs = dict(fn_kwargs or {})
        self.trial_timeout = trial_timeout
        self.faults = faults
        #: the virtual clock, in seconds
        self.now = 0.0
        #: every attempt submitted, in order
        self.submitted: list[TrialTask] = []
        self._attempts: dict[int, int] = {}
        self._events: list[tuple[float, int, str, ExecutorEvent]] = []
        self._order = itertools.count()
        #: attempt key -> its outcome, while it runs (what a prune rewrites)
        self._running: dict[str, TrialOutcome] = {}
        #: the workers attempts may go to, in order; quarantined ones leave it
        self.workers: list[str] = ["fake-worker"] if workers is None else [f"fake-worker-{i}" for i in range(workers)]
        self._pooled = workers is not None
        self._n_workers = len(self.workers)
        #: worker -> the attempt key it runs (pooled workers only)
        self._busy: dict[str, str] = {}
        self._queued: list[TrialTask] = []
        #: attempt key -> a worker it should not run on (unless no other is left)
        self._avoid: dict[str, str] = {}
        #: attempt key -> the only workers it may run on
        self._only: dict[str, tuple[str, ...]] = {}
        #: workers retired (they left once idle), in order
        self.retired: list[str] = []
        self._free_since: dict[str, float] = {w: 0.0 for w in self.workers}
        #: workers quarantined, in order
        self.quarantined: list[str] = []
        if faults is not None:
            import inspect

            try:
                n_args = len(inspect.signature(faults).parameters)
            except (TypeError, ValueError):
                n_args = 2
            self._faults = faults if n_args >= 3 else (lambda trial, attempt, worker, f=faults: f(trial, attempt))
        else:
            self._faults = None

    def slots(self) -> int:
        """The configured number of slots (with ``workers=``: the workers left)."""
        return len(self.workers) if self._pooled else self._slots

    def open(self) -> None:
        """Start a run with nothing scheduled."""
        self._events, self._running, self._busy, self._queued = [], {}, {}, []

    def _take_worker(self, key: str) -> str | None:
        if not self._pooled:
            return self.workers[0]
        avoid = self._avoid.get(key)
        free = [w for w in self.workers if w not in self._busy]
        only = self._only.get(key)
        if only is not None:
            free = [w for w in free if w in only]
        if avoid is not None and any(w != avoid for w in self.workers):
            free = [w for w in free if w != avoid]  # as Dask's loose worker restrictions
        if not free:
            return None
        worker = min(free, key=lambda w: (self._free_since[w], self.workers.index(w)))
        self._busy[worker] = key
        return worker

    def _free(self, key: str) -> None:
        for worker, running in list(self._busy.items()):
            if running == key:
                del self._busy[worker]
                self._free_since[worker] = self.now

    def quarantine(self, worker: str) -> None:
        """No further attempt goes to ``worker``."""
        if worker in self.workers:
            self.workers.remove(worker)
        self.quarantined.append(worker)

    def retire(self, worker: str) -> None:
        """``worker`` takes nothing new and leaves (the loop asks once it is idle)."""
        if worker in self.workers:
            self.workers.remove(worker)
        self.retired.append(worker)

    def add_worker(self) -> str:
        """A new worker joins (as an adaptive cluster grows); returns its name."""
        worker = f"fake-worker-{self._n_workers}"
        self._n_workers += 1
        self.workers.append(worker)
        self._free_since[worker] = self.now
        return worker

    def clock(self) -> float:
        """The virtual time (the engine measures a drain's grace on it)."""
        return self.now

    def wall(self) -> float:
        """The wall-clock time of the simulated cluster: the virtual time (records' times are on it)."""
        return self.now

    def alarm(self, delay: float) -> None:
        """A :class:`~daskhpo.engine.executor.Wake` event ``delay`` virtual seconds from now."""
        self._at(self.now + delay, "", Wake())

    def _at(self, time: float, key: str, event: Any) -> None:
        heapq.heappush(self._events, (time, next(self._order), key, event))

    def submit(self, task: TrialTask, avoid: str | None = None, workers: tuple[str, ...] | None = None) -> None:
        """Run the attempt now (or once a worker is free); schedule its reports and completion.

        ``avoid``: a worker not to run it on, unless no other is left.  ``workers``: run it
        only on one of these (it waits until one is free).
        """
        self.submitted.append(task)
        if avoid is not None:
            self._avoid[task.key] = avoid
        if workers is not None:
            self._only[task.key] = tuple(workers)
        worker = self._take_worker(task.key)
        if worker is None:  # every worker busy: it waits, as on a cluster
            self._queued.append(task)
            return
        self._start(task, worker)

    def _start(self, task: TrialTask, worker: str) -> None:
        attempt = self._attempts[task.trial] = self._attempts.get(task.trial, 0) + 1
        fault = self._faults(task.trial, attempt, worker) if self._faults is not None else None
        start, length = self.now, float(self.duration(task.params))
        if fault == "lose":
            self._at(start + length / 2, task.key, Failed(task.key, "KilledWorker: the worker died (simulated)"))
            return
        if fault == "break":
            outcome = run_trial(_faulty_node, TrialTask(task.trial, task.params, task.key), {})
            record = outcome.record.replace(started=start, ended=start + length / 10, worker=worker)
            self._at(start + length / 10, task.key, Completed(task.key, TrialOutcome(record, [], None)))
            return
        # Run to its end now, keeping the checkpoint of each report: where a prune or the
        # deadline stops it is only known later, and cut_short (the worker's semantics) cuts it.
        outcome = run_trial(self.fn, TrialTask(task.trial, task.params, task.key, None, task.checkpoint), self.fn_kwargs,
                            keep_checkpoints=True)
        n = len(outcome.reports)
        end = start + length
        if self.trial_timeout is not None and length > self.trial_timeout:
            end = start + self.trial_timeout
            # the reports made before the deadline (see _report_time), then the interrupt
            before = sum(1 for i in range(n) if self._report_time(start, length, i, n) < end)
            outcome = cut_short(outcome, before, "timeout", self.trial_timeout)
        for i, (step, values) in enumerate(outcome.reports):
            self._at(self._report_time(start, length, i, n), task.key, Reported(task.key, task.trial, step, values, worker))
        if fault == "rerun":
            self._at(start + length / 2, task.key, Rerun(task.key))
            end += length / 2
        outcome = TrialOutcome(outcome.record.replace(started=start, ended=end, worker=worker), outcome.reports,
                               outcome.checkpoint, outcome.checkpoints)
        self._running[task.key] = outcome
        self._at(end, task.key, Completed(task.key, outcome))

    @staticmethod
    def _report_time(start: float, length: float, i: int, n: int) -> float:
        """When report ``i`` of ``n`` of an attempt of ``length`` seconds is made: evenly spread."""
        return start + length * (i + 1) / (n + 1)

    def next_event(self) -> ExecutorEvent:
        """The earliest scheduled event; the clock moves to its time."""
        if not self._events:
            raise RuntimeError("FakeExecutor.next_event: nothing is running")
        time, _, key, event = heapq.heappop(self._events)
        self.now = max(self.now, time)
        if isinstance(event, (Completed, Failed)):
            self._running.pop(key, None)
            self._free(key)
            self._dispatch()
        return event

    def _dispatch(self) -> None:
        """Start the waiting attempts that have a free worker now."""
        for queued in list(self._queued):
            worker = self._take_worker(queued.key)
            if worker is not None:
                self._queued.remove(queued)
                self._start(queued, worker)

    def _drop(self, key: str, since: float = float("-inf")) -> None:
        self._events = [e for e in self._events if not (e[2] == key and e[0] >= since)]
        heapq.heapify(self._events)

    def cancel(self, key: str) -> None:
        """Drop the attempt's events; it fails now."""
        self._drop(key)
        self._running.pop(key, None)
        self._queued = [t for t in self._queued if t.key != key]
        self._at(self.now, key, Failed(key, "CancelledError: cancelled"))

    def stop(self, key: str, worker: str | None) -> None:
        """Prune: the attempt stops at its next report, as :func:`daskhpo.report` does."""
        outcome = self._running.get(key)
        upcoming = sorted(e[0] for e in self._events if e[2] == key and isinstance(e[3], Reported))
        if outcome is None:
            return
        if self.wait_decisions:  # the report just delivered raises: the next step never runs
            when, delivered = self.now, len(outcome.reports) - len(upcoming)
            if delivered < 1:
                return
        elif not upcoming:
            return  # no further report: the trial never sees the flag and completes
        else:
            when, delivered = upcoming[0], len(outcome.reports) - len(upcoming) + 1
        self._cut(key, outcome, when, delivered, "pruned")

    def _cut(self, key: str, outcome: TrialOutcome, when: float, delivered: int, status: str) -> None:
        """Attempt ``key`` stops at ``when``, right after its report number ``delivered`` (:func:`cut_short`)."""
        self._drop(key, since=when)
        outcome = cut_short(outcome, delivered, status)
        outcome = TrialOutcome(outcome.record.replace(ended=when), outcome.reports, outcome.checkpoint, outcome.checkpoints)
        self._running[key] = outcome
        self._at(when, key, Completed(key, outcome))

    def close(self) -> None:
        """Forget everything still scheduled."""
        self._events, self._running, self._busy, self._queued = [], {}, {}, []


def _faulty_node(**params: Any) -> float:
    raise RuntimeError("CUDA error: an illegal memory access was encountered")


class _ModelTurn:
    """The end of the model's batch under way (an event the fake keeps to itself)."""


class FakeModelExecutor(FakeExecutor):
    """A fake executor that runs the production suggester path in virtual time.

    It has ``wake()``, so an experiment (or an engine given a
    :class:`~daskhpo.engine.suggester.Suggester`) suggests through the suggester: batches
    (``ask_batch``), tells and decisions posted while a batch runs, late decisions, fills.
    But no model thread runs: the engine hands the suggester to :meth:`drive_model`, and
    each of the model's batches takes ``model_seconds`` of virtual time, during which
    trials run, results are recorded and calls are posted, exactly as they would while a
    real model thread fits.  So the suggester's timing rules are tested deterministically
    (contrast :class:`~daskhpo.engine.simulate.ModelClockExecutor`, charged with real time).

    Parameters
    ----------
    fn, **kwargs
        As for :class:`FakeExecutor`.
    model_seconds : float or callable, default 1.0
        Virtual seconds one batch of the model takes: a number, or ``model_seconds(k)``
        for a batch of ``k`` suggestions.
    """

    def __init__(self, fn: Callable[..., Any], *, model_seconds: float | Callable[[int], float] = 1.0,
                 **kwargs: Any) -> None:
        super().__init__(fn, **kwargs)
        self.model_seconds = model_seconds if callable(model_seconds) else (lambda k, s=float(model_seconds): s)
        self._model: Any = None
        self._turn = False
        #: (virtual start, virtual end, size) of each batch of the model
        self.batches: list[tuple[float, float, int]] = []

    def open(self) -> None:
        super().open()
        self._model, self._turn = None, False

    def drive_model(self, model: Any) -> None:
        """Run ``model``'s turns here, in virtual time, instead of on a thread of its own."""
        self._model = model
        model.clock = self.clock

    def wake(self) -> None:
        """A :class:`~daskhpo.engine.executor.Wake` event now."""
        self._at(self.now, "", Wake())

    def model_busy(self, busy: bool) -> None:
        """The model has work (trials requested): begin a batch unless one is under way."""
        if busy:
            self._begin_turn()

    def model_wait(self) -> ExecutorEvent | None:
        """Nothing runs: the next event (the end of the batch under way), or ``None`` if none is due."""
        return self.next_event() if self._events else None

    def _begin_turn(self) -> None:
        model = self._model
        if model is None or self._turn or not model.has_work():
            return
        if model.begin_turn():  # the posted calls ran; a batch is under way, holding the model
            k = model.batch_under_way
            self._turn = True
            end = self.now + float(self.model_seconds(k))
            self.batches.append((self.now, end, k))
            self._at(end, "", _ModelTurn())

    def next_event(self) -> ExecutorEvent:
        """The earliest event; a batch that ends hands its suggestions over and wakes the loop."""
        while True:
            event = super().next_event()
            if not isinstance(event, _ModelTurn):
                return event
            self._turn = False
            self._model.end_turn()  # wakes the loop (a Wake event now)
            self._begin_turn()  # what was posted or requested meanwhile

    def close(self) -> None:
        super().close()
        self._model, self._turn = None, False
