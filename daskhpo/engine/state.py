"""The loop's decisions as a pure state machine: events in, instructions out.

:class:`LoopState` is everything :class:`~daskhpo.engine.loop.Engine` decides, and nothing it
does: which trials to submit and when, attempts and retries, the budget, ``max_broken``
(:mod:`daskhpo.engine.broken`), prunes and the answers to reports that wait for them, the
quarantine of faulty workers (:mod:`daskhpo.engine.quarantine`), a drain's grace and the
run's overall ``timeout`` (a drain of its own when the time is up).  It reads no clock (the time
comes with each event), starts no thread, touches no file and knows no Dask, so each rule
is tested by feeding it events (see ``tests/engine/test_state.py``), in the spirit of
``distributed``'s ``WorkerState``.

:meth:`LoopState.handle` takes one event and returns the instructions to carry out, in
order.  The events are the executor's (:class:`~daskhpo.engine.executor.Completed`,
:class:`~daskhpo.engine.executor.Failed`, :class:`~daskhpo.engine.executor.Reported`,
:class:`~daskhpo.engine.executor.Rerun`, :class:`~daskhpo.engine.executor.NoWorkers`,
:class:`~daskhpo.engine.executor.Wake`) and the driver's own (:class:`Start`,
:class:`Suggested`, :class:`Decided`, :class:`DrainRequested`, :class:`Idle`,
:class:`Ended`).  Some instructions ask for an answer, which the driver hands back as the
next event: :class:`RequestSuggestions` and :class:`TakeSuggestions` are answered by
:class:`Suggested`, a :class:`Report` that needs a decision by :class:`Decided`.  The
events and instructions themselves are plain dataclasses in :mod:`daskhpo.engine.messages`
(re-exported here).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from ..records import FINISHED, PREEMPTED, ReportRecord, TrialRecord
from .broken import BrokenPolicy, MaxBroken
from .drain import DrainRequest
from .errors import NoWorkersError, SchedulerLostError, TooManyBrokenTrials
from .executor import Completed, Failed, NoWorkers, Reported, Rerun, Started, Wake, WorkersChanged
from .lifetimes import Lifetimes
from .messages import (
    Cancel,
    Decided,
    DrainRequested,
    Ended,
    Finish,
    Idle,
    Planned,
    Prune,
    QuarantineWorker,
    Raise,
    Record,
    Release,
    Report,
    RequestSuggestions,
    Retire,
    SetAlarm,
    Start,
    Submit,
    Suggested,
    TakeSuggestions,
    WaitForModel,
)
from .quarantine import Quarantine
from .worker import pruned

__all__ = [
    "LoopState", "Planned",
    # events
    "Start", "Suggested", "Decided", "DrainRequested", "Idle", "Ended",
    # instructions
    "Submit", "Retire", "Cancel", "Prune", "Release", "Report", "Record", "QuarantineWorker", "SetAlarm",
    "RequestSuggestions", "TakeSuggestions", "WaitForModel", "Raise", "Finish",
]

logger = logging.getLogger(__name__)


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
    #: pruned while its worker was unknown: the prune is sent once it is (Started or Reported)
    prune_pending: bool = False
    #: the worker of its last report (where a prune is sent)
    worker: str | None = None
    #: the suspect or quarantined worker it broke on, when it runs again because of that
    quarantined_from: str | None = None
    #: the step of a report the trial waits on (``report(wait=...)``) until it is answered
    waiting: float | None = None
    #: reports whose decision comes later (:class:`Decided` with ``decision=None``)
    undecided: int = 0
    #: (time, step) of each earlier attempt preempted (its worker left; it stopped at a report)
    preempted: tuple = ()
    #: seconds its earlier, preempted attempts ran (what a resumed attempt needs less)
    ran: float = 0.0
    #: the workers it was submitted to (``None``: any)
    allowed: tuple[str, ...] | None = None
    #: whether its worker is known (started, or reported)
    placed: bool = False
    #: the executor's clock when this attempt was submitted; once placed, when it started
    #: (what it ran so far is counted from there: queueing is not running)
    sent: float = 0.0
    #: the checkpoint of its last preempted attempt that saved one (never a parent's)
    own_checkpoint: Any = None

    def again(self, **changes: Any) -> _Job:
        """The job of its next attempt (what carries over from this one)."""
        carried = dict(plan=self.plan, submitted=self.submitted, attempts=self.attempts + 1, seen=self.seen,
                       preempted=self.preempted, ran=self.ran, own_checkpoint=self.own_checkpoint,
                       # a pruned trial run again is pruned there too, once its worker is known
                       stopping=self.stopping, prune_pending=self.stopping)
        return _Job(**{**carried, **changes})

    @property
    def retried(self) -> int:
        """Attempts that count against ``retries`` (preempted ones do not)."""
        return self.attempts - len(self.preempted)


#: seconds after which an attempt not yet started waits in a queue (not merely on its way)
_QUEUED = 10.0
#: seconds between two countings of the running trials into the expected run time
_REFRESH = 60.0


def _last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else ""


class LoopState:
    """What the loop knows and decides during one run.

    Parameters
    ----------
    n_workers : int
        Trials in flight.
    retries : int
        Further attempts of a trial whose worker died or left mid-trial.
    max_broken : {"auto"} or int or None, default "auto"
        When broken trials end the run (:class:`Raise` of
        :class:`~daskhpo.engine.errors.TooManyBrokenTrials`): see
        :mod:`daskhpo.engine.broken`.
    quarantine_after : int or None
        See :class:`~daskhpo.engine.quarantine.Quarantine`.
    budget : int or None
        Most trials to finish in this run.
    model : bool
        Suggestions come from a model working on its own (take, then request), not one
        by one from a plain callable.
    reports : bool
        Reports are handed on (the run has an ``on_report``).
    run : str
        Unique per run: the attempts' keys are made of it.
    timeout : float or None
        Seconds of the executor's clock, from :class:`Start`, after which nothing more is
        submitted: the run drains itself (reason ``"timeout"``), its trials in flight get
        ``timeout_grace`` seconds to finish.
    timeout_grace : float or None
        ``None``: trials in flight at the timeout may run to their end; ``0``: they are
        cancelled at once (not recorded: a resumed search runs them again).
    max_preemptions : int, default 10
        Times one trial may be preempted (its worker leaving: it stops at a report and
        runs again elsewhere from its checkpoint) before it is recorded ``lost``.
    lifetimes : Lifetimes, optional
        Walltime-aware admission and soft lifetimes, from the executor's
        :class:`~daskhpo.engine.executor.WorkersChanged` (see :mod:`daskhpo.engine.lifetimes`).
    fidelity : str, optional
        The parameter that holds a trial's fidelity (the space's fidelity dimension): its
        expected run time is then learned per fidelity.
    """

    def __init__(self, *, n_workers: int, retries: int = 1, max_broken: MaxBroken = "auto",
                 quarantine_after: int | None = 3, budget: int | None = None, model: bool = False,
                 reports: bool = False, run: str = "run", timeout: float | None = None,
                 timeout_grace: float | None = None, max_preemptions: int = 10,
                 lifetimes: Lifetimes | None = None, fidelity: str | None = None) -> None:
        self.n_workers, self.retries, self.max_broken = n_workers, retries, max_broken
        self.fidelity = fidelity
        self.max_preemptions = max_preemptions
        self.life = lifetimes if lifetimes is not None else Lifetimes()
        self.policy = BrokenPolicy(max_broken, n_workers)
        self.timeout, self.timeout_grace = timeout, timeout_grace
        #: the executor's clock at :class:`Start` (where ``timeout`` counts from)
        self.started: float | None = None
        #: set once ``timeout`` was reached
        self.timed_out = False
        self.quarantine_after, self.budget, self.model, self.reports = quarantine_after, budget, model, reports
        self.run = run
        #: the wall-clock time of the event being handled
        self.wall = 0.0
        self.guard = Quarantine(quarantine_after, clock=lambda: self.wall)
        #: attempt key -> its job, while it runs
        self.jobs: dict[str, _Job] = {}
        self.finished = self.broken = 0
        #: trials the model owes (requested, not taken), as of its last answer
        self.outstanding = 0
        #: the optimizer had nothing more to suggest: ask again after the next real event
        self.hold = False
        self.drains: list[DrainRequest] = []
        #: the drain's deadline on the executor's clock, once a drain was seen
        self.deadline: float | None = None
        #: set once the run is over (drained, or an error)
        self.done = False
        self._told: set[str] = set()
        self._attempts = 0
        #: trials waiting for a worker with time enough left (see daskhpo.engine.lifetimes)
        self.parked: list[_Job] = []
        #: the executor's clock when the trials parked now began to wait
        self.parked_since: float | None = None
        #: the executor's clock at the event being handled
        self.now = 0.0
        #: trials a drain left unfinished before its end (preempted, lost): abandoned with the rest
        self.dropped: set[int] = set()

    # -- queries ---------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """Whether the run goes on: something runs, is held, is owed by the model, or a drain waits."""
        return not self.done and bool(self.jobs or self.parked or self.guard.held or self.outstanding or self.drains)

    def free_slots(self) -> int:
        """Trials to ask for now."""
        # Up to ``quarantine_after`` held trials leave their slot to another trial (so a
        # streak can be seen); more occupy slots, so a fast-failing worker cannot churn
        # through the search while it waits for its judgement.
        taken = len(self.jobs) + len(self.parked) + self.outstanding
        held = self.guard.held
        free = self.n_workers - taken - max(0, held - (self.quarantine_after or 0))
        if self.budget is not None:
            free = min(free, self.budget - self.finished - taken - held)
        return free

    # -- the one entry point ---------------------------------------------------------------
    def handle(self, event: Any, *, now: float, wall: float) -> list[Any]:
        """The instructions that follow ``event``, in order.

        Parameters
        ----------
        event
            An executor event or one of this module's.
        now : float
            The executor's clock (what a drain's grace is measured on).
        wall : float
            The wall-clock time (``time.time()``), for the records.
        """
        self.wall, self.now = wall, now
        if self.done and not isinstance(event, Ended):
            return []
        if isinstance(event, Ended):
            return [Record(trial, checkpoint) for _job, trial, checkpoint in self.guard.release()]
        out: list[Any] = []
        if isinstance(event, Start) and self.started is None:
            self.started = now
            if self.timeout is not None:
                out.append(SetAlarm(self.timeout))  # wakes the loop at the timeout if nothing else does
        self._check_timeout(now, wall)  # before the event: what it frees is not filled again
        out += self._handle(event, wall)
        if self.parked:
            out += self._unpark()
        return out + self._check_drain(now)

    def _check_timeout(self, now: float, wall: float) -> None:
        """Drain the run once ``timeout`` seconds passed since :class:`Start`."""
        if self.timeout is None or self.timed_out or self.started is None:
            return
        if now < self.started + self.timeout - 0.01:  # a timer may fire a hair early
            return
        self.timed_out = True
        grace = math.inf if self.timeout_grace is None else self.timeout_grace
        self.drains.append(DrainRequest(f"timeout={self.timeout:g} s", grace, wall))

    def _handle(self, event: Any, wall: float) -> list[Any]:
        try:
            handler = _HANDLERS[type(event)]
        except KeyError:
            raise TypeError(f"LoopState.handle: unknown event {event!r}") from None
        return handler(self, event, wall)

    def _idle(self, event: Idle, wall: float) -> list[Any]:
        if self.jobs:
            return []  # something runs: its events move things on
        if self.guard.held:  # every slot holds a broken trial: judge now
            return self._resolve(*self.guard.settle(), wall=wall) + self._fill()
        if self.drains or not self.model:
            return []
        return [WaitForModel(0.1), *self._fill()]  # only the model can move things on

    # -- workers with lifetimes (see daskhpo.engine.lifetimes) -------------------------------
    def _workers_changed(self, event: WorkersChanged, wall: float) -> list[Any]:
        joined = len(self.life.update(event.ends, wall, event.starts))
        out: list[Any] = []
        for key, job in list(self.jobs.items()):
            if job.placed or job.allowed is None:
                continue
            # not started yet, and every worker it may run on left (it would wait forever),
            # or fresh workers came that it may start on at once (it waits behind busy ones)
            stranded = not any(w in event.ends for w in job.allowed)
            queued = self.now - job.sent > _QUEUED  # not merely on its way to a worker
            if self.drains:  # nothing new during a drain (as for a lost trial): a stranded one is abandoned
                if stranded:
                    del self.jobs[key]
                    self.dropped.add(job.plan.trial)
                    out.append(Cancel(key))
                continue
            if stranded or (joined > 0 and queued):
                joined -= 1
                del self.jobs[key]
                # the same attempt elsewhere (not one more against retries); the executor's cancel
                # makes the old one refuse to start should it be claimed after all
                out += [Cancel(key), *self._submit(job.again(attempts=job.attempts,
                                                             quarantined_from=job.quarantined_from))]
        return out + self._retirements(wall)

    def _started(self, event: Started, wall: float) -> list[Any]:
        job = self.jobs.get(event.key)
        out: list[Any] = []
        if job is not None and event.worker is not None:
            out += self._place(job, event.worker)
        return out + self._retirements(wall)

    def _place(self, job: _Job, worker: str) -> list[Any]:
        """``job`` runs on ``worker`` (it started, or reported); a prune waiting for it is sent."""
        if not job.placed:
            job.sent = self.now  # its run time counts from its start, not its submission
        job.worker, job.placed = worker, True
        return self._pending_prune(job)

    def _pending_prune(self, job: _Job) -> list[Any]:
        """The prune decided while the job's worker was unknown, now that it is known."""
        if not job.prune_pending or job.worker is None:
            return []
        job.prune_pending = False
        return [Prune(job.key, job.worker)]

    def _retirements(self, wall: float) -> list[Any]:
        """Retire the workers too near their end for a trial on which nothing of ours runs."""
        if not self.life.known or self.drains:
            return []
        busy = [job.worker for job in self.jobs.values() if job.placed]
        maybe = [w for job in self.jobs.values() if not job.placed for w in (job.allowed or (None,))]
        # what a worker must have left to stay: for the trials waiting, else for the shortest one to come
        need = min((self._need(job) or 0.0 for job in self.parked), default=self.life.shortest)
        return [Retire(w) for w in self.life.to_retire(wall, need, busy, maybe)]

    def _fidelity_of(self, plan: Planned) -> float | None:
        """The fidelity of ``plan`` (``None``: no fidelity dimension, or not a number)."""
        value = plan.params.get(self.fidelity) if self.fidelity is not None else None
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def _need(self, job: _Job) -> float | None:
        """Seconds ``job`` is expected to need still (``None``: unknown yet)."""
        return self.life.expected_for(job.ran, self._fidelity_of(job.plan))

    def _preempted(self, job: _Job, event: Completed, wall: float) -> list[Any]:
        """An attempt stopped at a report because its worker is leaving: the same trial again, from there."""
        outcome, plan = event.outcome, job.plan
        record = outcome.record
        preempted = (*job.preempted, (record.ended if record.ended is not None else wall, record.last_step))
        if outcome.checkpoint is not None:
            job.own_checkpoint = outcome.checkpoint
        out: list[Any] = []
        if self.reports:  # its reports whose live message was lost: given once, never again
            for step, values in sorted(outcome.reports, key=lambda r: r[0]):
                if step not in job.seen:
                    job.seen.add(step)
                    out.append(Report(ReportRecord(plan.trial, float(step), dict(values)), plan.params, job.key,
                                      decide=False))
        if len(preempted) > self.max_preemptions:
            reason = (f"preempted {len(preempted)} times (its workers left mid-trial; "
                      f"max_preemptions={self.max_preemptions})")
            trial = TrialRecord(plan.trial, dict(plan.params), "lost", ended=wall, error=reason,
                                submitted=job.submitted, attempts=job.attempts, parent=plan.parent,
                                checkpoint_from=plan.checkpoint_from, preempted=preempted)
            if job.seen:
                trial = trial.replace(last_step=max(job.seen))
            return out + self._resolve([(job, trial, job.own_checkpoint)], [], wall=wall) + self._fill()
        if job.stopping:  # pruned before it was preempted: a pruned trial, not one to resume
            trial = pruned(record, sorted(outcome.reports, key=lambda r: r[0])).replace(
                status="pruned", error=None, submitted=job.submitted, attempts=job.attempts, parent=plan.parent,
                checkpoint_from=plan.checkpoint_from, preempted=preempted)
            if job.seen:
                trial = trial.replace(last_step=max(job.seen))
            return out + self._resolve([(job, trial, job.own_checkpoint)], [], wall=wall) + self._fill()
        logger.info("trial %d preempted after step %g on %s: resuming it from its checkpoint (attempt %d)",
                    plan.trial, record.last_step, record.worker, job.attempts + 1)
        if self.drains:  # draining: nothing new; abandoned (a resumed search runs it again)
            self.dropped.add(plan.trial)
            return out
        if outcome.checkpoint is not None:
            plan = dataclasses.replace(plan, checkpoint=outcome.checkpoint)
        ran = job.ran + (record.duration if math.isfinite(record.duration) else 0.0)
        return out + self._submit(job.again(plan=plan, preempted=preempted, ran=ran))

    def _drain_requested(self, event: DrainRequested, wall: float) -> list[Any]:
        self.drains.append(event.request)
        return []

    def _attempt_ended(self, event: Completed | Failed, wall: float) -> list[Any]:
        self.hold = False
        job = self.jobs.pop(event.key, None)
        if job is None:
            return []  # an attempt already given up
        if isinstance(event, Completed) and event.outcome.record.status == PREEMPTED:
            return self._preempted(job, event, wall) + self._retirements(wall)
        return self._finished(job, event, wall) + self._retirements(wall)

    # -- suggestions -----------------------------------------------------------------------
    def _fill(self) -> list[Any]:
        if self.drains or self.done:
            return []  # draining: nothing new, no retry; a resumed search runs it again
        if self.model:
            return [TakeSuggestions(ask_nothing=not self.hold)]
        return [RequestSuggestions(1)] if self.free_slots() > 0 else []

    def _suggested(self, event: Suggested, wall: float) -> list[Any]:
        out = [i for plan in event.plans if not self.drains for i in self._submit(_Job(plan, wall))]
        self.outstanding = event.outstanding
        if not self.model:
            return out if event.nothing else out + self._fill()
        if event.requested:
            self.hold = event.nothing
            return out
        self.hold = self.hold or event.nothing
        if self.hold or self.drains:
            return out
        return [*out, RequestSuggestions(self.free_slots())]

    def _submit(self, job: _Job) -> list[Any]:
        """Submit ``job`` where it fits before its worker's end; or park it until a worker fits it."""
        if self.life.known and self.now - self.life.refreshed >= _REFRESH:
            self.life.estimate(((self.now - j.sent + j.ran, self._fidelity_of(j.plan))
                                for j in self.jobs.values() if j.placed), self.now)
        need = self._need(job)
        allowed = self.life.eligible(self.wall, need, (j.worker for j in self.jobs.values() if j.placed))
        out: list[Any] = []
        if allowed == ():  # no worker has the time left: wait for a fresh one, within a bound
            waited = 0.0 if self.parked_since is None else self.now - self.parked_since
            if waited < self.life.wait and not self.life.hopeless(self.wall, need or 0.0):
                if self.parked_since is None:
                    self.parked_since = self.now
                    out.append(SetAlarm(self.life.wait))  # wakes the loop at the bound if no worker comes
                self.parked.append(job)
                return out
            self.life.warn_starved(self.wall, max(need or 0.0, self.life.min_left), waited)
            allowed = None
        self._attempts += 1
        job.key = f"daskhpo-trial-{job.plan.trial}-{self.run}-{self._attempts}"
        self.jobs[job.key] = job
        job.allowed, job.sent = allowed, self.now
        return [Submit(job.plan, job.key, job.attempts, job.quarantined_from, allowed)]

    def _unpark(self) -> list[Any]:
        """Submit the parked trials that fit now (or waited long enough)."""
        if self.drains or self.done:
            return []
        waiting, self.parked = self.parked, []
        out = [i for job in waiting for i in self._submit(job)]
        if not self.parked:
            self.parked_since = None
        return out

    # -- reports and decisions -------------------------------------------------------------
    def _reported(self, event: Reported, wall: float = 0.0) -> list[Any]:
        self.hold = False
        job = self.jobs.get(event.key)
        if job is None:
            return []  # a trial already recorded, or a lost attempt
        out: list[Any] = []
        if event.worker is not None:
            out += self._place(job, event.worker)
        if event.wait:
            job.waiting = event.step
        if not self.reports or event.step in job.seen:
            # report() values still reach the record, with the trial's outcome; nothing to
            # decide (no on_report, or a repeated step): a trial waiting on it goes on
            return out + self._answer(job)
        job.seen.add(event.step)
        return [*out, Report(ReportRecord(job.plan.trial, float(event.step), dict(event.values)), job.plan.params,
                             job.key)]

    def _decided(self, event: Decided, wall: float = 0.0) -> list[Any]:
        if event.key is not None:  # the answer of on_report
            job = self.jobs.get(event.key)
            if job is None:
                return []
            if event.decision is None:
                job.undecided += 1
                return []
            return self._decide(job, event.decision)
        job = next((j for j in self.jobs.values() if j.plan.trial == event.trial), None)
        if job is None:
            return []
        job.undecided = max(job.undecided - 1, 0)
        return self._decide(job, event.decision)

    def _decide(self, job: _Job, decision: str | None) -> list[Any]:
        if decision == "prune" and not job.stopping:
            job.stopping = True
            job.waiting = None  # the stop flag answers a waiting report too
            logger.debug("pruning trial %d (reported up to step %g)", job.plan.trial, max(job.seen, default=math.nan))
            if job.worker is None:  # not placed yet (e.g. resubmitted): sent once its worker is known
                job.prune_pending = True
                return []
            return [Prune(job.key, job.worker)]
        return self._answer(job)

    def _answer(self, job: _Job) -> list[Any]:
        """Release a trial waiting on its report once every decision on its reports is in."""
        if job.waiting is None or job.undecided or job.stopping:
            return []
        step, job.waiting = job.waiting, None
        return [Release(job.key, job.worker, step)]

    # -- attempts ----------------------------------------------------------------------------
    def _rerun(self, event: Rerun, wall: float = 0.0) -> list[Any]:
        """The cluster runs an attempt again: one more attempt, bounded by ``retries``."""
        self.hold = False
        key = event.key
        job = self.jobs.get(key)
        if job is None:
            return []
        job.attempts += 1
        if job.retried > self.retries + 1:
            logger.warning("trial %d: its worker left again, giving up after %d attempts (retries=%d)",
                           job.plan.trial, job.attempts - 1, self.retries)
            job.attempts -= 1
            job.exhausted = True
            return [Cancel(key)]
        logger.warning("trial %d: its worker left mid-trial; the cluster runs it again (attempt %d)",
                       job.plan.trial, job.attempts)
        return []

    def _no_workers(self, event: NoWorkers, wall: float = 0.0) -> list[Any]:
        self.done = True
        return [self._no_workers_error(event)]

    def _no_workers_error(self, event: NoWorkers) -> Raise:
        if event.scheduler is not None:
            return Raise(SchedulerLostError(
                f"lost the connection to the Dask scheduler at {event.scheduler} "
                f"{event.waited:.0f} s ago (its process or node died?) while {len(self.jobs)} trials "
                "ran; every finished trial is stored: start a scheduler and its workers again and "
                "run the same script to resume"
            ))
        return Raise(NoWorkersError(
            f"no Dask worker connected within {event.waited:.0f} s while {len(self.jobs)} "
            "trials waited; check that the cluster's jobs start and stay up (e.g. squeue "
            "and the jobs' logs), or raise worker_timeout for a busy queue"
        ))

    def _finished(self, job: _Job, event: Completed | Failed, wall: float) -> list[Any]:
        plan = job.plan
        base = dict(submitted=job.submitted, attempts=job.attempts, parent=plan.parent,
                    checkpoint_from=plan.checkpoint_from, preempted=job.preempted)
        out: list[Any] = []
        if isinstance(event, Completed):
            outcome = event.outcome
            trial, checkpoint = outcome.record.replace(**base), outcome.checkpoint
            if checkpoint is None:  # resumed, and saved nothing since: where it resumed from (never a parent's)
                checkpoint = job.own_checkpoint
            if trial.status == "completed" and not job.preempted:  # a whole run: what admission expects
                self.life.observe(trial.duration, self._fidelity_of(plan))
            if not outcome.reports and job.seen:
                trial = trial.replace(last_step=max(job.seen))
            if self.reports:  # reports whose live message was lost or came late
                for step, values in sorted(outcome.reports, key=lambda r: r[0]):
                    if step not in job.seen:
                        job.seen.add(step)
                        out.append(Report(ReportRecord(plan.trial, float(step), dict(values)), plan.params, job.key,
                                          decide=False))
        else:
            status = "lost"
            if job.exhausted:
                reason = f"its worker left mid-trial in each of {job.retried} attempts (retries={self.retries})"
            elif not event.lost:  # running it again would fail the same way
                status, reason = "broken", event.reason
            elif job.retried <= self.retries:
                logger.warning("trial %d lost (%s): resubmitting (attempt %d)", plan.trial, event.reason,
                               job.attempts + 1)
                if self.drains:
                    self.dropped.add(plan.trial)
                    return []
                return self._submit(job.again())
            else:
                reason = f"{event.reason} (after {job.attempts} attempts)"
            trial = TrialRecord(plan.trial, dict(plan.params), status, ended=wall, error=reason, **base)
            if job.seen:
                trial = trial.replace(last_step=max(job.seen))
            checkpoint = None
        out += self._resolve(*self.guard.judge(job, trial, checkpoint), wall=wall)
        return out + self._fill()

    # -- records, quarantine -----------------------------------------------------------------
    def _resolve(self, ready: list, again: list, wall: float) -> list[Any]:
        out = self._quarantined()
        for job, worker in again:  # broke on a suspect or quarantined worker: once more, elsewhere
            if self.drains:
                self.dropped.add(job.plan.trial)
                continue
            logger.info("trial %d: running it again away from worker %s (attempt %d)",
                        job.plan.trial, worker, job.attempts + 1)
            out += self._submit(job.again(quarantined_from=worker))
        last = self._record(ready, out)
        verdict = None if last is None else self.policy.verdict()
        if verdict is None:
            return out
        # Stopping: what the quarantine still holds is recorded (and counted) first, so the
        # message counts what the history holds.
        last = self._record(self.guard.release(), out) or last
        verdict = self.policy.verdict() or verdict
        self.done = True
        out.append(Raise(TooManyBrokenTrials(
            f"{verdict}; last one, trial {last.trial} ({last.status}): {_last_line(last.error)}"
        )))
        return out

    def _record(self, ready: list, out: list[Any]) -> TrialRecord | None:
        """Append a :class:`Record` of each of ``ready`` to ``out``; the last broken one."""
        last = None
        for _job, trial, checkpoint in ready:  # all recorded, then judged
            out.append(Record(trial, checkpoint))
            finished = trial.status in FINISHED
            self.policy.observe(finished)
            if finished:
                self.finished += 1
            else:
                self.broken, last = self.broken + 1, trial
        return last

    def _quarantined(self) -> list[Any]:
        """Workers quarantined since last time."""
        out = []
        for worker, entry in self.guard.quarantined.items():
            if worker not in self._told:
                self._told.add(worker)
                out.append(QuarantineWorker(worker, dict(entry)))
        return out

    # -- draining ------------------------------------------------------------------------------
    def _check_drain(self, now: float) -> list[Any]:
        """Whether to stop now; starts the deadline when a drain is first seen."""
        if not self.drains or self.done:
            return []
        out: list[Any] = []
        grace = min(r.grace for r in self.drains)
        if self.deadline is None or now + grace < self.deadline:
            first = self.deadline is None
            self.deadline = now + grace
            if self.jobs and 0 < grace < math.inf:
                out.append(SetAlarm(grace))  # wakes the loop at the deadline if nothing else does
            if first:
                quiet = (self.timed_out and len(self.drains) == 1) or all(r.quiet for r in self.drains)
                log = logger.info if quiet else logger.warning
                log("draining (%s): submitting nothing more; %d trial(s) in flight %s",
                    self.drains[0].reason, len(self.jobs),
                    "may run to their end" if grace == math.inf else f"get {grace:g} s")
        if self.jobs and now < self.deadline - 0.01:  # a timer may fire a hair early
            return out
        drained = min(self.drains, key=lambda r: r.grace)
        abandoned = sorted({job.plan.trial for job in (*self.jobs.values(), *self.parked)} | self.dropped)
        self.parked = []
        if abandoned:
            log = logger.info if drained.quiet else logger.warning
            log("drain: grace over, cancelling trial(s) %s (not recorded: a resumed search runs them again)", abandoned)
        out += [Cancel(key) for key in self.jobs]
        self.jobs.clear()
        self.done = True
        return [*out, Finish(drained, abandoned, timeout=self.timed_out and drained.reason.startswith("timeout="))]


_HANDLERS = {
    Start: lambda self, event, wall: self._fill(),
    Wake: lambda self, event, wall: self._fill(),
    Suggested: LoopState._suggested,
    Decided: LoopState._decided,
    DrainRequested: LoopState._drain_requested,
    Idle: LoopState._idle,
    Reported: LoopState._reported,
    Rerun: LoopState._rerun,
    NoWorkers: LoopState._no_workers,
    Completed: LoopState._attempt_ended,
    Failed: LoopState._attempt_ended,
    WorkersChanged: LoopState._workers_changed,
    Started: LoopState._started,
}
