"""One run of an experiment: what lives only while :meth:`daskhpo.Experiment.run` runs.

A :class:`Run` is made at the start of each run and dropped at its end: the engine, the
model thread (suggester), the trial-id counter, the checkpoints running trials start from,
and what fills idle slots with (run times, incumbents).  It is the engine's other side:
it plans suggestions, journals starts and reports, records finished trials (on disk
before the optimizer hears of them), tells the optimizer, and publishes to subscribers.
"""

from __future__ import annotations

import heapq
import logging
import math
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..engine import Engine, Executor, Planned, Suggester
from ..engine.lifetimes import Lifetimes
from ..engine.loop import check_seconds
from ..objectives import ObjectiveVector
from ..optimizers import CONTINUE, Report
from ..records import ReportRecord, TrialRecord, TrialStarted
from ..store import Storage
from .interrupt import CtrlC, interrupted_message
from .state import Enqueued, Subscribers
from .teller import Teller

__all__ = ["Run"]

logger = logging.getLogger(__name__)

#: best completed configurations that fills (workon's fill_idle) start from
_INCUMBENTS = 5


class Run:
    """The state of one run and the engine's callbacks.

    Parameters
    ----------
    experiment : daskhpo.Experiment
        Read through its public API (name, space, optimizer, objectives, subscribe).
    storage : Storage
        Where records, reports and starts go.
    teller : Teller
        Makes what the optimizer is told.
    queue : Enqueued
        Configurations to run before the optimizer's own.
    subscribers : Subscribers
        Told of each finished trial.
    on_quarantine : callable
        Called with each quarantined worker's entry.
    """

    def __init__(self, experiment: Any, storage: Storage, teller: Teller, queue: Enqueued,
                 subscribers: Subscribers, on_quarantine: Callable[[dict[str, Any]], None]) -> None:
        self.experiment = experiment
        self.optimizer = experiment.optimizer
        self.space = experiment.space
        self.objectives = experiment.objectives
        self.storage = storage
        self.history = storage.history
        self.checkpoints = storage.checkpoints
        self.teller = teller
        self.queue = queue
        self.subscribers = subscribers
        self.on_quarantine = on_quarantine
        #: guards the trial ids (the model thread and fills take them)
        self._ids_lock = threading.Lock()
        self._next_id = self.history.next_trial_id
        #: the lowest id a trial of this run may have (what configurations enqueued now wait for)
        self.first_id = self._next_id
        #: the suggester (model thread), if suggestions are made in the background
        self.model: Suggester | None = None
        self.engine: Engine | None = None
        #: running trial id -> the trial whose checkpoint it starts from
        self.running_from: dict[int, int] = {}
        #: whether this run fills idle slots (fill_idle), and from what
        self.filling = False
        #: run times (s) of the last completed trials of this run
        self.run_times: deque[float] = deque(maxlen=64)
        #: (minimized objective, trial, params) of the best completed trials, best first
        self.incumbents: list[tuple[float, int, dict[str, Any]]] = []
        #: the executor's check of a trial's resources (workon's ``resources``), if it has one
        self.resources_for: Callable[[Mapping[str, Any], int], Any] | None = None
        #: after a Ctrl-C ended the run (daskhpo.experiment.interrupt): the line that says so
        self.interrupted: str | None = None

    # -- the run -----------------------------------------------------------------------
    def execute(self, executor: Executor, budget: int | None, *, max_trials: int | None, n_workers: int,
                retries: int, max_broken: int | str | None, quarantine_after: int | None, progress: bool | None,
                callbacks: Sequence[Callable[[dict], Any]] | None, fill_idle: float, timeout: float | None = None,
                timeout_grace: float | None = None, lifetimes: Lifetimes | None = None) -> None:
        """Run trials on ``executor`` until ``budget`` more have finished; records why it ended."""
        from ..viz.progress import attach

        name = self.experiment.name
        self.resources_for = getattr(executor, "resources_for", None)
        fn = getattr(executor, "fn", None)
        if self.objectives and fn is not None and not isinstance(fn, ObjectiveVector):
            # read on the worker: the objective returns a dict of the objectives, not "objective"
            executor.fn = ObjectiveVector(fn, self.objectives)
        engine = Engine(executor, n_workers=n_workers, retries=retries, max_broken=max_broken,
                        quarantine_after=quarantine_after, on_quarantine=self.on_quarantine, timeout=timeout,
                        timeout_grace=timeout_grace, lifetimes=lifetimes,
                        fidelity=self.space.fidelity.name if self.space.fidelity is not None else None)
        logger.info("%s: running up to %s more trials, %d in flight", name, budget, n_workers)
        # Executors that can be woken get suggestions from a model thread (daskhpo.engine.suggester).
        fill = None
        if callable(getattr(executor, "wake", None)):
            fill = self.fill if self.optimizer.fills_idle_slots and fill_idle else None
            self.model = Suggester(self.suggest_batch, fill=fill, fill_share=float(fill_idle))
        self.engine = engine
        self.filling = self.model is not None and fill is not None
        if self.filling:
            for record in self.history.records:
                self.keep_incumbent(record)
        ended = "completed"
        try:
            with attach(self.experiment, progress=progress, callbacks=callbacks, total=max_trials,
                        done=self.history.finished, n_workers=n_workers), CtrlC(engine) as ctrl_c:
                engine.run(self.model or self.suggest, self.record, budget, on_report=self.on_report,
                           on_start=self.on_start)
            if self.model is not None and self.model.stats["fills"]:
                logger.info("%s: %d trials filled while the model was busy (fill_idle=%s)",
                            name, self.model.stats["fills"], fill_idle)
            if ctrl_c.pressed:  # told by Experiment.run's KeyboardInterrupt, after the history is saved
                ended = "interrupted"
                self.interrupted = interrupted_message(self.history.finished, self.storage.kept, len(engine.abandoned))
                logger.info("%s: interrupted (Ctrl-C) after %d finished trials", name, self.history.finished)
            elif engine.timed_out:  # the run's own time budget: a normal end, not a hand-over
                ended = engine.drained.reason.replace("=", ": ", 1)
                logger.info("%s: %s reached after %d finished trials%s", name, engine.drained.reason,
                            self.history.finished, f"; {len(engine.abandoned)} cancelled in flight, to be run "
                            "again on resume" if engine.abandoned else "")
            elif engine.drained is not None:
                ended = f"drained: {engine.drained.reason}"
                logger.warning("%s: drained (%s) after %d finished trials; %d abandoned, to be run again on "
                               "resume", name, engine.drained.reason, self.history.finished, len(engine.abandoned))
        except KeyboardInterrupt:
            ended = "interrupted"
            raise
        except BaseException as exc:
            ended = f"error: {type(exc).__name__}: {str(exc).strip().split(chr(10), 1)[0]}"
            raise
        finally:
            self.model = self.engine = self.resources_for = None  # hold no executor (nor its client) after the run
            self.filling = False
            self.queue.requeue()  # enqueued configurations whose trial never finished wait again
            self.storage.end_session(ended)
            self.storage.snapshot()

    # -- suggestions -------------------------------------------------------------------
    def suggest(self) -> Planned | None:
        """One suggestion, on the loop's thread (executors that cannot be woken)."""
        (trial_id,) = self.reserve_ids(1)
        suggestion = self.optimizer.ask(trial_id)
        if suggestion is None:
            self.release_ids([trial_id])
            return None
        return self.plan(trial_id, suggestion)

    def suggest_batch(self, k: int) -> list[Planned]:
        """On the suggester's model thread (background suggestions): one batch per request."""
        ids = self.reserve_ids(k)
        suggestions = self.optimizer.ask_batch(ids)
        self.release_ids(ids[len(suggestions):])
        return [self.plan(i, s) for i, s in zip(ids, suggestions)]

    def fill(self, k: int) -> list[Planned]:
        """Cheap suggestions for idle slots."""
        # On the loop's thread while the model thread may be inside the optimizer: fill()
        # touches only the space and the seed.
        incumbents = [params for _, _, params in self.incumbents]
        return [self.plan(i, self.optimizer.fill(i, incumbents)) for i in self.reserve_ids(k)]

    def reserve_ids(self, k: int) -> list[int]:
        """The next ``k`` trial ids."""
        # Ids are taken before the optimizer is asked (they seed its draws), by the model
        # thread and by fills on the loop's thread: one counter, under a lock.
        with self._ids_lock:
            ids = list(range(self._next_id, self._next_id + k))
            self._next_id += k
            return ids

    def release_ids(self, ids: list[int]) -> None:
        """Give unused ids back."""
        # A batch that suggested fewer trials gives its last ids back, unless a fill took
        # the ids after them meanwhile (the history then skips those trial ids).
        with self._ids_lock:
            if ids and self._next_id == ids[-1] + 1:
                self._next_id = ids[0]

    def plan(self, trial_id: int, suggestion: Any) -> Planned:
        """A suggestion as the engine runs it: an enqueued configuration first, validated."""
        parent, checkpoint = suggestion.parent, suggestion.checkpoint
        params = dict(suggestion.params)
        queued = self.queue.take(trial_id) if parent is None and checkpoint is None else None
        if queued is not None:
            # An enqueued configuration (first, the defaults) takes the place of a new one,
            # completed by the suggestion; the optimizer learns what ran when it is told.
            if self.space.conditional:
                # It may activate parameters the suggestion left out: those are drawn from
                # their priors (a draw that depends only on the seed and the trial id).
                rng = self.optimizer.rng_for(trial_id, stream="enqueue")
                params = {**{n: d.sample(rng) for n, d in self.space.items()}, **params}
            params.update(queued)
        try:
            # (in a conditional space this also leaves out the parameters made inactive)
            params = self.space.validate(params)
        except ValueError as exc:
            raise ValueError(f"{self.optimizer!r} suggested an invalid configuration: {exc}") from None
        if self.resources_for is not None:
            # a request that is no request, or that no worker can hold, ends the run here:
            # before the trial is journaled or submitted (see workon's ``resources``)
            self.resources_for(params, trial_id)
        if checkpoint is not None:
            self.running_from[trial_id] = checkpoint
        return Planned(trial_id, params, parent, checkpoint, self.checkpoints.get(checkpoint))

    # -- events from the engine ----------------------------------------------------------
    def on_start(self, plan: Planned, attempt: int) -> None:
        self.history.append_start(TrialStarted(plan.trial, plan.params, attempt, time.time()))

    def on_report(self, report: ReportRecord, params: Mapping[str, Any]) -> str | None:
        # Journaled before the optimizer decides on it, like a finished trial.
        report = self.history.append_report(report)
        if self.model is not None:
            # decided after the tells posted before it, at once if the model is free, else by the
            # model thread before its next batch; the loop goes on receiving meanwhile
            self.model.post(self.decide, self.teller.report(report, params))
            return None
        return self.optimizer.report(self.teller.report(report, params))

    def decide(self, report: Report) -> None:
        """The optimizer's decision on a report, on the model thread, handed to the engine."""
        try:
            decision = self.optimizer.report(report)
        except Exception:
            logger.exception("handling a report of trial %d failed", report.trial_id)
            decision = CONTINUE  # answered all the same: the trial may wait on it (report(wait=...))
        engine, model = self.engine, self.model
        if engine is None:  # the run ended meanwhile
            return
        engine.decide_later(report.trial_id, decision)
        if model is not None and model.on_ready is not None:
            model.on_ready()  # wake the loop to apply it

    def record(self, record: TrialRecord, checkpoint: Any) -> None:
        """A finished trial: on disk before the optimizer hears of it (nothing told is ever lost)."""
        finite = record.status in ("completed", "pruned") and math.isfinite(record.objective)
        # "best" keeps the lowest: the objective as the optimizer sees it (negated to maximize)
        self.checkpoints.put(record.trial, checkpoint, objective=self.teller.sign * record.objective if finite else None)
        if self.objectives and record.status == "completed" and not record.values:
            # the worker reads the objectives (ObjectiveVector) when the executor's objective could be
            # wrapped; an executor without one (no .fn) ran the user's function as it is
            record = record.replace(status="broken", objective=math.nan, error=(
                f"InvalidResult: objective(s) {list(self.objectives)} missing from the result"))
        record, callbacks = self.subscribers.append(self.history, record)
        self.queue.done(record.trial)  # its enqueued configuration (if any) ran: no longer stored
        told = self.teller.trial(record)
        self.running_from.pop(record.trial, None)
        if self.filling and record.status == "completed" and record.started and record.ended:
            # a typical trial's run time: how long a slot may wait for the model (fill_idle)
            self.run_times.append(record.ended - record.started)
            self.model.trial_seconds = statistics.median(self.run_times)
            self.keep_incumbent(record)
        if self.model is not None:  # told on the model thread, in this order, before its next batch
            self.model.post(self.optimizer.tell, told)
            self.model.post(self.retain_checkpoints)
        else:
            self.optimizer.tell(told)
            self.retain_checkpoints()
        for callback in callbacks:
            self.subscribers.call(callback, record)

    def keep_incumbent(self, record: TrialRecord) -> None:
        """Keep the best completed feasible configurations (what fills start from), best first."""
        if record.status == "completed" and record.feasible and math.isfinite(record.objective):
            entry = (self.teller.sign * record.objective, record.trial, record.params)
            self.incumbents = heapq.nsmallest(_INCUMBENTS, [*self.incumbents, entry], key=lambda e: e[:2])

    def retain_checkpoints(self) -> None:
        """Delete the checkpoints no one may start from again (``keep_checkpoints``)."""
        if self.checkpoints.keep == "all":
            return
        needed = self.optimizer.needed_checkpoints()
        if needed is None:
            return  # the optimizer cannot tell: keep everything
        self.checkpoints.retain(set(needed) | set(list(self.running_from.values())))


def check_options(*, max_trials: int | None = None, timeout: float | None = None, timeout_grace: float | None = None,
                  fill_idle: float | None = None, lifetimes: Lifetimes | None = None) -> None:
    """The options of a run, checked before it starts (a ``ValueError`` naming the bad one)."""
    if max_trials is not None and (not isinstance(max_trials, int) or max_trials < 0):
        raise ValueError(f"max_trials must be a non-negative integer, got {max_trials!r}")
    check_seconds("timeout", timeout, positive=True)
    check_seconds("timeout_grace", timeout_grace, positive=False)
    if fill_idle is not None and (not isinstance(fill_idle, (int, float)) or not 0 <= fill_idle < 1):
        raise ValueError(f"fill_idle must be a share in [0, 1), got {fill_idle!r}")
    if lifetimes is not None and not isinstance(lifetimes, Lifetimes):
        raise ValueError(f"lifetimes must be a daskhpo.Lifetimes (or None), got {lifetimes!r}")
