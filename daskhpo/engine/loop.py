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
nothing at all is running.  With a plain callable (and with the plain fake executor)
``suggest`` runs on the loop thread, deterministically.  An executor with
``drive_model(model)`` (:class:`~daskhpo.engine.fake.FakeModelExecutor`) runs the model's
turns itself, in virtual time, instead of a model thread: the production suggester path,
deterministically.

A drain (:meth:`Engine.drain`, or :func:`~daskhpo.engine.drain.request_drain` for the
whole process, e.g. from a signal handler) stops submitting, waits up to its grace for
the trials in flight, cancels the rest without recording them, and returns normally;
:attr:`Engine.drained` says so.  The run's ``timeout`` is a drain of its own, at the time
set (:attr:`Engine.timed_out`).

Broken outcomes pass through a :class:`~daskhpo.engine.quarantine.Quarantine`, which may
hold them until their worker is judged, and quarantine a faulty one (its trials then run
again elsewhere).

What to do is decided by a pure state machine, :class:`~daskhpo.engine.state.LoopState`
(trials, attempts, retries, the budget, prunes, quarantine, a drain's grace); this module
only drives it: it reads each event from the executor, hands it to the state machine, and
carries out the instructions it returns (submit, cancel, prune, record, ...).  It knows
nothing of any algorithm (trials come from ``suggest``, outcomes go to ``record``, reports
to ``on_report``) nor of Dask (see :mod:`daskhpo.engine.dask_executor`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from ..records import ReportRecord, TrialRecord
from . import drain as _drain
from .broken import MaxBroken, check_max_broken
from .drain import DrainRequest
from .errors import TooManyBrokenTrials
from .executor import Executor
from .lifetimes import Lifetimes
from .quarantine import Quarantine
from .state import (
    Cancel,
    Decided,
    DrainRequested,
    Ended,
    Finish,
    Idle,
    LoopState,
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
from .suggester import Suggester
from .worker import TrialTask

__all__ = ["Engine", "Planned", "TooManyBrokenTrials"]

logger = logging.getLogger(__name__)


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
    max_broken : {"auto"} or int or None, default "auto"
        When broken trials stop the run with :class:`TooManyBrokenTrials`: ``"auto"`` only
        when the objective itself looks broken (long streaks of broken trials, see
        :mod:`daskhpo.engine.broken`), an int once more trials than this broke, ``None``
        never.
    quarantine_after : int or None, default 3
        Distinct trials in a row broken on one worker, while trials finish on others,
        before that worker is quarantined (see :mod:`daskhpo.engine.quarantine`);
        ``None``: never.
    on_quarantine : callable, optional
        Receives the record (a dict: worker, host, when, why, trials) of each worker
        quarantined.
    timeout : float, optional
        Seconds (of the executor's clock) from the start of each run after which nothing
        more is submitted; the run then ends as a drain does, and returns normally with
        :attr:`timed_out` set.
    timeout_grace : float, optional
        Seconds the trials in flight at the timeout get to finish; those still running then
        are cancelled and not recorded (a resumed search runs them again).  ``None``: they
        run to their end.
    max_preemptions : int, default 10
        Times one trial may be preempted (its worker leaving; it stops at a report and
        resumes elsewhere from its checkpoint: see :mod:`daskhpo.engine.lifetimes`) before
        it is recorded ``lost``.  Preemptions never count against ``retries``.
    lifetimes : Lifetimes, optional
        How the expected run time is learned (:mod:`daskhpo.engine.lifetimes`); each run
        starts from its settings afresh.
    fidelity : str, optional
        The space's fidelity parameter: the run time is learned per fidelity.
    """

    def __init__(self, executor: Executor, *, n_workers: int | None = None, retries: int = 1,
                 max_broken: MaxBroken = "auto", quarantine_after: int | None = 3,
                 on_quarantine: Callable[[dict], None] | None = None, timeout: float | None = None,
                 timeout_grace: float | None = None, max_preemptions: int = 10, lifetimes: Lifetimes | None = None,
                 fidelity: str | None = None) -> None:
        if n_workers is not None and (not isinstance(n_workers, int) or n_workers < 1):
            raise ValueError(f"n_workers must be a positive integer, got {n_workers!r}")
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
        if not isinstance(max_preemptions, int) or max_preemptions < 0:
            raise ValueError(f"max_preemptions must be a non-negative integer, got {max_preemptions!r}")
        if lifetimes is not None and not isinstance(lifetimes, Lifetimes):
            raise ValueError(f"lifetimes must be a daskhpo.Lifetimes, got {lifetimes!r}")
        self.max_preemptions, self.lifetimes, self.fidelity = max_preemptions, lifetimes or Lifetimes(), fidelity
        self.executor = executor
        self.n_workers = n_workers
        self.retries = retries
        self.max_broken = check_max_broken(max_broken)
        self.timeout = check_seconds("timeout", timeout, positive=True)
        self.timeout_grace = check_seconds("timeout_grace", timeout_grace, positive=False)
        #: whether the last run ended at its ``timeout``
        self.timed_out = False
        Quarantine(quarantine_after)  # checks the value
        self.quarantine_after = quarantine_after
        self.on_quarantine = on_quarantine
        #: the drain that ended the last run, or None (see :meth:`drain`)
        self.drained: DrainRequest | None = None
        #: trials given up when a drain's grace ran out (not recorded: run again on resume)
        self.abandoned: list[int] = []
        self._drains: list[DrainRequest] = []
        #: late decisions (:meth:`decide_later`), from any thread, until the loop's next turn
        self._decisions: deque[tuple[int, str]] = deque()
        self._state: LoopState | None = None

    @property
    def running(self) -> bool:
        """Whether :meth:`run` is in its loop (its executor opened, a drain seen at once)."""
        return self._state is not None

    def drain(self, grace: float = 0.0, reason: str = "drain requested", *, quiet: bool = False) -> None:
        """Stop the run gracefully: submit nothing more, finish or give up what runs.

        Trials in flight get ``grace`` seconds (of the executor's clock, from when the loop
        sees the request) to finish and be recorded; those still running then are
        cancelled and not recorded (a resumed search runs them again).  :meth:`run` then
        returns normally, with :attr:`drained` set.  Callable from any thread and from a
        signal handler (it takes no lock); a second call with a shorter grace shortens it.
        A drain asked for before :meth:`run` applies to the next run only.  ``quiet``: the
        caller tells the user (Ctrl-C), the drain is only logged at ``INFO``.
        """
        self._drains.append(DrainRequest(str(reason), _drain.check_grace(grace), time.time(), quiet))
        wake = getattr(self.executor, "wake", None)
        if wake is not None and getattr(self, "_state", None) is not None:
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
        self.drained, self.abandoned, self.timed_out = None, [], False
        _drain.register(self)  # before reading the process-wide request: none is missed
        request = _drain.drain_requested()
        if request is not None:
            self._drains.append(request)
        try:
            n_workers = self.n_workers if self.n_workers is not None else executor.slots()
        except BaseException:
            _drain.unregister(self)
            raise
        model = suggest if isinstance(suggest, Suggester) else None
        state = self._state = LoopState(
            n_workers=n_workers, retries=self.retries, max_broken=self.max_broken,
            quarantine_after=self.quarantine_after, budget=budget, model=model is not None,
            reports=on_report is not None, run=uuid.uuid4().hex, timeout=self.timeout,
            timeout_grace=self.timeout_grace, max_preemptions=self.max_preemptions,
            lifetimes=self.lifetimes.fresh(), fidelity=self.fidelity,
        )
        self.guard = state.guard
        self._suggest, self._model, self._record = suggest, model, record
        self._on_report, self._on_start = on_report, on_start
        self._seen_drains = 0
        self._decisions.clear()
        self._driven = False
        self._clock = getattr(executor, "clock", None) or time.monotonic
        # the workers' ends and the records' times are on it (the fake executor's is virtual)
        self._wall = getattr(executor, "wall", None) or time.time
        executor.open()
        if model is not None:
            model.on_ready = executor.wake
            model.on_busy = getattr(executor, "model_busy", None)
            drive = getattr(executor, "drive_model", None)
            self._driven = drive is not None
            if drive is not None:
                drive(model)  # the executor runs the model's turns (in virtual time)
            else:
                model.start()
        try:
            self._drain_requests()
            self._handle(Start())
            while state.active:
                self._drain_requests()
                if not state.active:
                    break
                if not state.jobs and not state.parked:  # parked trials wait for the executor's news
                    self._handle(Idle())
                    continue
                event = executor.next_event()
                self._decisions_in()
                self._handle(event)
                self._decisions_in()
            return state.finished
        finally:
            _drain.unregister(self)
            self._drains = []
            try:
                for instruction in state.handle(Ended(), now=self._clock(), wall=self._wall()):
                    try:  # a run ending early: held ones are broken
                        record(instruction.trial, instruction.checkpoint)
                    except Exception:  # never hide why the run ended
                        logger.exception("could not record held trial %d", instruction.trial.trial)
            finally:
                if model is not None:
                    model.close()
                executor.close()
                self._state = None
                self._suggest = self._model = self._record = self._on_report = self._on_start = None

    def decide_later(self, trial: int, decision: str) -> None:
        """Hand in the decision on a report for which ``on_report`` returned ``None``.

        Callable from any thread (the suggester's model thread decides reports while the
        loop goes on); the loop applies it at its next turn, which the caller makes come
        soon (the suggester wakes the loop through the executor).
        """
        self._decisions.append((trial, decision))

    # -- the driver ----------------------------------------------------------------------
    def _drain_requests(self) -> None:
        """Hand drains asked for (from any thread) since last time to the state machine."""
        while self._seen_drains < len(self._drains):
            self._seen_drains += 1
            self._handle(DrainRequested(self._drains[self._seen_drains - 1]))

    def _decisions_in(self) -> None:
        while self._decisions:
            trial, decision = self._decisions.popleft()
            self._handle(Decided(trial, decision))

    def _handle(self, event: Any) -> None:
        """Hand ``event`` to the state machine and carry out what it says, answers included."""
        now, wall = self._clock(), self._wall()  # one reading for the event and its answers
        state = self._state
        todo = state.handle(event, now=now, wall=wall)
        while todo:
            instruction = todo.pop(0)
            answer = self._carry_out(instruction)
            if answer is not None:  # what follows the answer comes before the rest
                self._drain_requests()  # one asked for meanwhile (by record, say) submits nothing more
                todo[:0] = state.handle(answer, now=now, wall=wall)

    def _carry_out(self, instruction: Any) -> Any:
        """Do one instruction; returns the event that answers it, if any."""
        try:
            do = self._do[type(instruction)]
        except KeyError:
            raise TypeError(f"Engine: unknown instruction {instruction!r}") from None
        return do(self, instruction)

    def _do_submit(self, instruction: Submit) -> None:
        plan = instruction.plan
        if self._on_start is not None:
            self._on_start(plan, instruction.attempt)
        task = TrialTask(plan.trial, plan.params, instruction.key, checkpoint=plan.checkpoint)
        where: dict[str, Any] = {}  # only what is set: an executor without the capability takes task alone
        if instruction.avoid is not None:
            where["avoid"] = instruction.avoid
        if instruction.workers is not None:
            where["workers"] = instruction.workers
        self.executor.submit(task, **where)

    def _do_retire(self, instruction: Retire) -> None:
        retire = getattr(self.executor, "retire", None)
        if retire is None:
            return
        try:
            retire(instruction.worker)
        except Exception:  # it may be gone already
            logger.exception("could not retire worker %s", instruction.worker)

    def _do_record(self, instruction: Record) -> None:
        self._record(instruction.trial, instruction.checkpoint)

    def _do_release(self, instruction: Release) -> None:
        release = getattr(self.executor, "release", None)
        if release is not None:
            release(instruction.key, instruction.worker, instruction.step)

    def _do_alarm(self, instruction: SetAlarm) -> None:
        alarm = getattr(self.executor, "alarm", None)
        if alarm is not None:
            alarm(instruction.delay)

    def _do_wait(self, instruction: WaitForModel) -> Any:
        waiter = getattr(self.executor, "model_wait", None) if self._driven else None
        if waiter is not None:  # the executor runs the model's turns: its next event is one
            return waiter()
        self._model.wait(timeout=instruction.timeout)
        return None

    def _do_finish(self, instruction: Finish) -> None:
        self.drained, self.abandoned = instruction.drained, list(instruction.abandoned)
        self.timed_out = instruction.timeout

    def _do_raise(self, instruction: Raise) -> None:
        raise instruction.error

    def _suggestions(self, n: int) -> Suggested:
        if self._model is not None:
            self._model.request(n)
            return self._taken(requested=True, ask_nothing=True)
        plan = self._suggest()  # one at a time: the state machine asks again while slots are free
        return Suggested(() if plan is None else (plan,), nothing=plan is None)

    def _taken(self, requested: bool, ask_nothing: bool) -> Suggested:
        model = self._model
        plans = tuple(model.take())
        nothing = model.nothing_now() if ask_nothing else False
        return Suggested(plans, nothing=nothing, outstanding=model.outstanding, requested=requested)

    def _report(self, instruction: Report) -> Decided | None:
        if not instruction.decide:  # reports that came with the trial's end: nothing to answer
            self._on_report(instruction.report, instruction.params)
            return None
        try:
            decision = self._on_report(instruction.report, instruction.params)
        except Exception:
            logger.exception("handling a report of trial %d failed", instruction.report.trial)
            decision = "continue"
        return Decided(instruction.report.trial, decision, key=instruction.key)

    def _quarantine(self, instruction: QuarantineWorker) -> None:
        """Tell the executor (and ``on_quarantine``) of a worker quarantined."""
        try:
            quarantine = getattr(self.executor, "quarantine", None)
            if quarantine is not None:
                quarantine(instruction.worker)
        except Exception:
            logger.exception("could not quarantine worker %s", instruction.worker)
        if self.on_quarantine is not None:
            try:
                self.on_quarantine(dict(instruction.entry))
            except Exception:
                logger.exception("on_quarantine failed")


def check_seconds(name: str, value: float | None, positive: bool) -> float | None:
    """``value`` as seconds (``None`` kept); a ``ValueError`` naming ``name`` otherwise."""
    if value is None:
        return None
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and value < float("inf")
    if not ok or not (value > 0 if positive else value >= 0):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"{name} must be {kind} seconds (or None), got {value!r}")
    return float(value)


Engine._do = {
    Submit: Engine._do_submit,
    Record: Engine._do_record,
    Report: lambda self, i: self._report(i),
    RequestSuggestions: lambda self, i: self._suggestions(i.n),
    TakeSuggestions: lambda self, i: self._taken(requested=False, ask_nothing=i.ask_nothing),
    Prune: lambda self, i: self.executor.stop(i.key, i.worker) and None,
    Release: Engine._do_release,
    Cancel: lambda self, i: self.executor.cancel(i.key) and None,
    QuarantineWorker: lambda self, i: self._quarantine(i) and None,
    Retire: Engine._do_retire,
    SetAlarm: Engine._do_alarm,
    WaitForModel: Engine._do_wait,
    Finish: Engine._do_finish,
    Raise: Engine._do_raise,
}
