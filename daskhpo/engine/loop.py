"""The asynchronous loop: keep ``n_workers`` trials in flight, react to each event.

One thread runs the loop and owns every piece of its state; there is no lock.  The
executor's threads (Dask's event loop, the completion pump, the watchdog) only put events
into a queue that :meth:`Executor.next_event` reads, so a slow ``suggest`` or ``record``
(a model fit, a snapshot) never keeps results or reports from being received: they wait,
in order, for the loop's next turn.

Suggestions off the critical path: when ``suggest`` is a
:class:`~daskhpo.engine.suggester.Suggester` (the experiment passes one when the executor
has ``wake()``, as the Dask one does), the optimizer runs on the suggester's model thread:
the loop *requests* as many trials as it has free slots, goes on receiving and recording
events, and submits the suggested trials when the model thread wakes it (a
:class:`~daskhpo.engine.executor.Wake` event).  One request serves every slot that is
free when the model thread gets to it (one batch, one fit), so the cost of a model is paid
once per batch rather than once per slot; the loop itself waits for the model only when
nothing at all is running.  With a plain callable (and with the fake executor) ``suggest``
runs on the loop thread, deterministically, as before.

A drain (:meth:`Engine.drain`, or :func:`~daskhpo.engine.drain.request_drain` for the
whole process, e.g. from a signal handler) stops submitting, waits up to its grace for
the trials in flight, cancels the rest without recording them, and returns normally;
:attr:`Engine.drained` says so.

Broken outcomes pass through a :class:`~daskhpo.engine.quarantine.Quarantine`, which may
hold them until their worker is judged, and quarantine a faulty one (its trials then run
again elsewhere).

The loop knows trials, attempts, retries and the stopping rules; it knows nothing of any
algorithm (trials come from ``suggest``, outcomes go to ``record``, reports to
``on_report``) nor of Dask (see :mod:`daskhpo.engine.dask_executor`).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..records import FINISHED, ReportRecord, TrialRecord
from . import drain as _drain
from .errors import NoWorkersError, SchedulerLostError, TooManyBrokenTrials
from .drain import DrainRequest
from .executor import Completed, Executor, Failed, NoWorkers, Reported, Rerun, Wake
from .quarantine import Quarantine
from .suggester import Suggester
from .worker import TrialTask

__all__ = ["Engine", "Planned", "TooManyBrokenTrials"]

logger = logging.getLogger(__name__)


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


@dataclass
class _Job:
    plan: Planned
    submitted: float
    key: str = ""
    attempts: int = 1
    #: set when the cluster re-ran the trial more often than ``retries`` allows
    exhausted: bool = False
    #: steps whose reports the caller has been given
    seen: set = field(default_factory=set)
    stopping: bool = False
    #: the worker of its last report (where a prune is sent)
    worker: str | None = None
    #: the suspect or quarantined worker it broke on, when it runs again because of that
    quarantined_from: str | None = None
    #: the step of a report the trial waits on (``report(wait=...)``) until it is answered
    waiting: float | None = None
    #: reports whose decision comes later (:meth:`Engine.decide_later`)
    undecided: int = 0


def _last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else ""


class Engine:
    """Runs trials through an executor, ``n_workers`` at a time.

    Parameters
    ----------
    executor : Executor
        Where trials run (:class:`~daskhpo.engine.dask_executor.DaskExecutor`, or
        :class:`~daskhpo.engine.fake.FakeExecutor` in tests and simulations).
    n_workers : int, optional
        Trials in flight.  Default: ``executor.slots()`` when the run starts.  Give it
        explicitly for adaptive clusters: queued trials are what makes them grow.
    retries : int
        Further attempts of a trial whose worker died or left mid-trial; beyond them the
        trial is recorded ``lost``.
    max_broken : int
        The run stops with :class:`TooManyBrokenTrials` once more trials than this broke.
    quarantine_after : int or None, default 3
        Distinct trials in a row broken on one worker, while trials finish on others,
        before that worker is quarantined (see :mod:`daskhpo.engine.quarantine`);
        ``None``: never.
    on_quarantine : callable, optional
        Receives the record (a dict: worker, host, when, why, trials) of each worker
        quarantined.
    """

    def __init__(self, executor: Executor, *, n_workers: int | None = None, retries: int = 1, max_broken: int = 3,
                 quarantine_after: int | None = 3, on_quarantine: Callable[[dict], None] | None = None) -> None:
        if n_workers is not None and (not isinstance(n_workers, int) or n_workers < 1):
            raise ValueError(f"n_workers must be a positive integer, got {n_workers!r}")
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
        if not isinstance(max_broken, int) or max_broken < 0:
            raise ValueError(f"max_broken must be a non-negative integer, got {max_broken!r}")
        self.executor = executor
        self.n_workers = n_workers
        self.retries = retries
        self.max_broken = max_broken
        Quarantine(quarantine_after)  # checks the value
        self.quarantine_after = quarantine_after
        self.on_quarantine = on_quarantine
        #: the drain that ended the last run, or None (see :meth:`drain`)
        self.drained: DrainRequest | None = None
        #: trials given up when a drain's grace ran out (not recorded: run again on resume)
        self.abandoned: list[int] = []
        self._drains: list[DrainRequest] = []

    def drain(self, grace: float = 0.0, reason: str = "drain requested") -> None:
        """Stop the run gracefully: submit nothing more, finish or give up what runs.

        Trials in flight get ``grace`` seconds (of the executor's clock, from when the loop
        sees the request) to finish and be recorded; those still running then are
        cancelled and not recorded (a resumed search runs them again).  :meth:`run` then
        returns normally, with :attr:`drained` set.  Callable from any thread and from a
        signal handler (it takes no lock); a second call with a shorter grace shortens it.
        A drain asked for before :meth:`run` applies to the next run only.
        """
        self._drains.append(DrainRequest(str(reason), _drain._check_grace(grace), time.time()))
        wake = getattr(self.executor, "wake", None)
        if wake is not None and getattr(self, "_jobs", None) is not None:
            try:
                wake()  # look at it now, not at the next event
            except Exception:  # not opened yet: the loop checks before it waits
                pass

    def run(
        self,
        suggest: Callable[[], Planned | None] | Suggester,
        record: Callable[[TrialRecord, Any], None],
        budget: int | None = None,
        on_report: Callable[[ReportRecord, dict], str] | None = None,
        on_start: Callable[[Planned, int], None] | None = None,
    ) -> int:
        """Run trials until ``budget`` trials finished or ``suggest`` has nothing more.

        Parameters
        ----------
        suggest : callable or Suggester
            Returns the next :class:`Planned` trial, or ``None`` for nothing now; or a
            :class:`~daskhpo.engine.suggester.Suggester` (started and closed here) that
            suggests on its own thread and wakes the loop through the executor's
            ``wake()``.
        record : callable
            Receives each finished trial's :class:`~daskhpo.records.TrialRecord` and its
            last checkpoint (or ``None``), before the next trial is suggested.
        budget : int, optional
            Finished (completed or pruned) trials after which no more are submitted.
        on_report : callable, optional
            Receives each intermediate report (a :class:`~daskhpo.records.ReportRecord`)
            with the trial's params, and returns ``"continue"`` or ``"prune"``, or ``None``
            when the decision comes later through :meth:`decide_later` (the experiment's
            model thread decides reports so, after the results told before them).  Reports
            that had not arrived when their trial ended are given (in step order) just
            before its ``record``.  Without it, reports only reach the record.
        on_start : callable, optional
            Receives each trial handed to the executor, with its attempt number.

        Returns
        -------
        int
            The number of trials that finished (completed or pruned).
        """
        executor = self.executor
        self.drained, self.abandoned = None, []
        _drain._register(self)  # before reading the process-wide request: none is missed
        request = _drain.drain_requested()
        if request is not None:
            self._drains.append(request)
        try:
            n_workers = self.n_workers if self.n_workers is not None else executor.slots()
        except BaseException:
            _drain._unregister(self)
            raise
        self._jobs: dict[str, _Job] = {}
        self._on_report = on_report
        self._decisions: deque[tuple[int, str]] = deque()
        guard = self.guard = Quarantine(self.quarantine_after)
        self._told: set[str] = set()
        finished = broken = 0

        clock = getattr(executor, "clock", None) or time.monotonic
        #: the drain's deadline on ``clock``, once the loop has seen a drain request
        deadline: float | None = None

        def submit(job: _Job) -> None:
            if self._drains:
                return  # draining: nothing new, no retry; a resumed search runs it again
            job.key = f"daskhpo-trial-{job.plan.trial}-{uuid.uuid4().hex}"
            self._jobs[job.key] = job
            if on_start is not None:
                on_start(job.plan, job.attempts)
            task = TrialTask(job.plan.trial, job.plan.params, job.key, checkpoint=job.plan.checkpoint)
            if job.quarantined_from is not None:
                executor.submit(task, avoid=job.quarantined_from)
            else:
                executor.submit(task)

        model = suggest if isinstance(suggest, Suggester) else None
        #: the optimizer had nothing more to suggest: ask again after the next real event
        hold = False

        def free_slots() -> int:
            # Up to ``quarantine_after`` held trials leave their slot to another trial (so
            # a streak can be seen); more occupy slots, so a fast-failing worker cannot
            # churn through the search while it waits for its judgement.
            taken = len(self._jobs) + (model.outstanding if model is not None else 0)
            free = n_workers - taken - max(0, guard.held - (self.quarantine_after or 0))
            if budget is not None:
                free = min(free, budget - finished - taken - guard.held)
            return free

        def fill() -> None:
            nonlocal hold
            if self._drains:
                return
            if model is None:
                while free_slots() > 0:
                    plan = suggest()
                    if plan is None:
                        return
                    submit(_Job(plan, time.time()))
                return
            for plan in model.take():
                submit(_Job(plan, time.time()))
            hold = hold or model.nothing_now()
            if not hold:
                model.request(free_slots())
                for plan in model.take():  # suggested at once when the model is cheap
                    submit(_Job(plan, time.time()))
                hold = model.nothing_now()

        def resolve(ready: list, again: list) -> None:
            nonlocal finished, broken
            self._quarantine()
            for job, worker in again:
                self._run_again(job, worker, submit)
            last = None
            for _job, trial, checkpoint in ready:  # all recorded, then judged
                record(trial, checkpoint)
                if trial.status in FINISHED:
                    finished += 1
                else:
                    broken, last = broken + 1, trial
            if last is not None and broken > self.max_broken:
                raise TooManyBrokenTrials(
                    f"{broken} trials broke (max_broken={self.max_broken}); last one, "
                    f"trial {last.trial} ({last.status}): {_last_line(last.error)}"
                )

        def draining() -> bool:
            """Whether to stop now; starts the deadline when a drain is first seen."""
            nonlocal deadline
            if not self._drains:
                return False
            grace = min(r.grace for r in list(self._drains))
            if deadline is None or clock() + grace < deadline:
                first = deadline is None
                deadline = clock() + grace
                alarm = getattr(executor, "alarm", None)
                if self._jobs and grace > 0 and alarm is not None:
                    alarm(grace)  # wakes the loop at the deadline if nothing else does
                if first:
                    logger.warning("draining (%s): submitting nothing more; %d trial(s) in flight get %g s",
                                   self._drains[0].reason, len(self._jobs), grace)
            if self._jobs and clock() < deadline - 0.01:  # a timer may fire a hair early
                return False
            self.drained = min(self._drains, key=lambda r: r.grace)
            self.abandoned = sorted({job.plan.trial for job in self._jobs.values()})
            if self.abandoned:
                logger.warning("drain: grace over, cancelling trial(s) %s (not recorded: a resumed search "
                               "runs them again)", self.abandoned)
            for key in list(self._jobs):
                executor.cancel(key)
            self._jobs.clear()
            return True

        executor.open()
        if model is not None:
            model.on_ready = executor.wake
            model.on_busy = getattr(executor, "model_busy", None)
            model.start()
        try:
            fill()
            while self._jobs or guard.held or (model is not None and model.outstanding) or self._drains:
                if draining():
                    break
                if not self._jobs:
                    if guard.held:  # every slot holds a broken trial: judge now
                        resolve(*guard.settle())
                    else:  # nothing runs: only the model can move things on (or a drain)
                        model.wait(timeout=0.1)
                    fill()
                    continue
                event = executor.next_event()
                if isinstance(event, Wake):
                    self._apply_decisions()
                    fill()
                    continue
                hold = False
                if isinstance(event, Reported):
                    self._report(event)
                    self._apply_decisions()
                    continue
                if isinstance(event, Rerun):
                    self._rerun(event.key)
                    continue
                if isinstance(event, NoWorkers) and event.scheduler is not None:
                    raise SchedulerLostError(
                        f"lost the connection to the Dask scheduler at {event.scheduler} "
                        f"{event.waited:.0f} s ago (its process or node died?) while {len(self._jobs)} trials "
                        "ran; every finished trial is stored: start a scheduler and its workers again and "
                        "run the same script to resume"
                    )
                if isinstance(event, NoWorkers):
                    raise NoWorkersError(
                        f"no Dask worker connected within {event.waited:.0f} s while {len(self._jobs)} "
                        "trials waited; check that the cluster's jobs start and stay up (e.g. squeue "
                        "and the jobs' logs), or raise worker_timeout for a busy queue"
                    )
                job = self._jobs.pop(event.key, None)
                if job is None:
                    continue  # an attempt already given up
                outcome = self._finish(job, event, submit)
                if outcome is None:
                    continue  # resubmitted
                trial, checkpoint = outcome
                resolve(*guard.judge(job, trial, checkpoint))
                fill()
            return finished
        finally:
            _drain._unregister(self)
            self._drains = []
            try:
                for _job, trial, checkpoint in guard.release():  # a run ending early: held ones are broken
                    try:
                        record(trial, checkpoint)
                    except Exception:  # never hide why the run ended
                        logger.exception("could not record held trial %d", trial.trial)
            finally:
                if model is not None:
                    model.close()
                executor.close()
                self._jobs, self._on_report = {}, None

    def _quarantine(self) -> None:
        """Tell the executor (and ``on_quarantine``) of workers quarantined since last time."""
        for worker, entry in self.guard.quarantined.items():
            if worker in self._told:
                continue
            self._told.add(worker)
            try:
                quarantine = getattr(self.executor, "quarantine", None)
                if quarantine is not None:
                    quarantine(worker)
            except Exception:
                logger.exception("could not quarantine worker %s", worker)
            if self.on_quarantine is not None:
                try:
                    self.on_quarantine(dict(entry))
                except Exception:
                    logger.exception("on_quarantine failed")

    def _run_again(self, job: _Job, worker: str, submit: Callable[[_Job], None]) -> None:
        """A trial that broke on a suspect or quarantined worker: one more attempt, elsewhere."""
        logger.info("trial %d: running it again away from worker %s (attempt %d)",
                    job.plan.trial, worker, job.attempts + 1)
        submit(_Job(job.plan, job.submitted, attempts=job.attempts + 1, seen=job.seen, quarantined_from=worker))

    # -- events ------------------------------------------------------------------------
    def _report(self, event: Reported) -> None:
        on_report = self._on_report
        job = self._jobs.get(event.key)
        if job is None:
            return  # a trial already recorded, or a lost attempt
        job.worker = event.worker
        if event.wait:
            job.waiting = event.step
        if on_report is None or event.step in job.seen:
            # report() values still reach the record, with the trial's outcome; nothing to
            # decide (no on_report, or a repeated step): a trial waiting on it goes on
            self._answer(job)
            return
        job.seen.add(event.step)
        try:
            decision = on_report(ReportRecord(job.plan.trial, float(event.step), dict(event.values)), job.plan.params)
        except Exception:
            logger.exception("handling a report of trial %d failed", job.plan.trial)
            self._answer(job)
            return
        if decision is None:
            job.undecided += 1
        else:
            self._decide(job, decision)

    def decide_later(self, trial: int, decision: str) -> None:
        """Hand in the decision on a report for which ``on_report`` returned ``None``.

        Callable from any thread (the suggester's model thread decides reports while the
        loop goes on); the loop applies it at its next turn, which the caller makes come
        soon (the suggester wakes the loop through the executor).
        """
        self._decisions.append((trial, decision))

    def _apply_decisions(self) -> None:
        while self._decisions:
            trial, decision = self._decisions.popleft()
            job = next((j for j in self._jobs.values() if j.plan.trial == trial), None)
            if job is not None:
                job.undecided = max(job.undecided - 1, 0)
                self._decide(job, decision)

    def _decide(self, job: _Job, decision: str | None) -> None:
        if decision == "prune" and not job.stopping:
            job.stopping = True
            job.waiting = None  # the stop flag answers a waiting report too
            logger.debug("pruning trial %d (reported up to step %g)", job.plan.trial, max(job.seen, default=math.nan))
            self.executor.stop(job.key, job.worker)
        else:
            self._answer(job)

    def _answer(self, job: _Job) -> None:
        """Release a trial waiting on its report once every decision on its reports is in."""
        if job.waiting is None or job.undecided or job.stopping:
            return
        release = getattr(self.executor, "release", None)
        if release is not None:
            release(job.key, job.worker, job.waiting)
        job.waiting = None

    def _rerun(self, key: str) -> None:
        """The cluster runs an attempt again: one more attempt, bounded by ``retries``."""
        job = self._jobs.get(key)
        if job is None:
            return
        job.attempts += 1
        if job.attempts > self.retries + 1:
            logger.warning("trial %d: its worker left again, giving up after %d attempts (retries=%d)",
                           job.plan.trial, job.attempts - 1, self.retries)
            job.attempts -= 1
            job.exhausted = True
            self.executor.cancel(key)
        else:
            logger.warning("trial %d: its worker left mid-trial; the cluster runs it again (attempt %d)",
                           job.plan.trial, job.attempts)

    def _finish(self, job: _Job, event: Completed | Failed, submit: Callable[[_Job], None]) -> tuple[TrialRecord, Any] | None:
        """The record of a finished attempt, or ``None`` when it was submitted again."""
        plan = job.plan
        base = dict(submitted=job.submitted, attempts=job.attempts, parent=plan.parent, checkpoint_from=plan.checkpoint_from)
        if isinstance(event, Completed):
            outcome = event.outcome
            trial = outcome.record.replace(**base)
            if not outcome.reports and job.seen:
                trial = trial.replace(last_step=max(job.seen))
            self._late_reports(job, outcome.reports)
            return trial, outcome.checkpoint
        status = "lost"
        if job.exhausted:
            reason = f"its worker left mid-trial in each of {job.attempts} attempts (retries={self.retries})"
        elif not event.lost:  # running it again would fail the same way
            status, reason = "broken", event.reason
        elif job.attempts <= self.retries:
            logger.warning("trial %d lost (%s): resubmitting (attempt %d)", plan.trial, event.reason, job.attempts + 1)
            submit(_Job(plan, job.submitted, attempts=job.attempts + 1, seen=job.seen))
            return None
        else:
            reason = f"{event.reason} (after {job.attempts} attempts)"
        lost = TrialRecord(plan.trial, dict(plan.params), status, ended=time.time(), error=reason, **base)
        if job.seen:
            lost = lost.replace(last_step=max(job.seen))
        return lost, None

    def _late_reports(self, job: _Job, reports: list[tuple[float, dict]]) -> None:
        on_report = self._on_report
        if on_report is None:
            return
        for step, values in sorted(reports, key=lambda r: r[0]):
            if step not in job.seen:
                job.seen.add(step)
                on_report(ReportRecord(job.plan.trial, float(step), dict(values)), job.plan.params)
