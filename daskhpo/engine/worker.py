"""The worker side of a trial: run the objective once and describe what happened as data.

Everything here runs on a Dask worker (or in-process under the fake executor).  It knows
the objective, its deadline and the trial's reporting context, and nothing of the client,
the loop or any algorithm.
"""

from __future__ import annotations

import ctypes
import math
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..devices import trial_devices
from ..records import PREEMPTED, TrialRecord
from ..reporting import TrialPreempted, TrialPruned, trial_context
from ..results import InvalidResult, parse_result

__all__ = ["TrialTask", "TrialOutcome", "TrialTimeout", "AttemptLost", "CLAIMS", "run_trial", "run_attempt",
           "claim_attempt", "pruned", "preempted", "timed_out", "cut_short"]

#: the scheduler's metadata (``Client.set_metadata``) where attempts are claimed, by run then key
CLAIMS = "daskhpo-attempts"
#: the claim an executor writes for an attempt it cancelled: no later start of it may run
CANCELLED = "cancelled"


class TrialTimeout(BaseException):
    """Raised inside an objective that ran past ``trial_timeout``.

    A ``BaseException``, so that an objective's own ``except Exception`` does not
    swallow it.
    """


class AttemptLost(Exception):
    """A started attempt started again: its first worker left (or it finished already); refused.

    The Dask scheduler runs a task again, without telling the client, when the worker that
    ran it leaves, mid-run or even after the task finished (while a client still holds its
    future); and it does so up to ``distributed.scheduler.allowed-failures`` times.  An
    attempt runs its objective at most once (:func:`claim_attempt`): its second start raises
    this instead, the task fails, and the engine decides, within ``retries``, whether the
    trial runs again as a *new* attempt.  The client classifies it as a lost worker
    (:func:`daskhpo.pickling.classify_failure`).
    """

    #: read by :func:`daskhpo.pickling.classify_failure`: a lost worker, not a broken trial
    daskhpo_lost = True


@dataclass(frozen=True)
class TrialTask:
    """One attempt of a trial, as it travels to a worker.

    Attributes
    ----------
    trial : int
        The trial id.
    params : dict
        Its configuration.
    key : str
        Unique per attempt (the Dask task key).
    topic : str or None
        Where :func:`daskhpo.report` publishes (``None``: reports are only collected).
    checkpoint : tuple or None
        The stored checkpoint the trial starts from (:func:`daskhpo.load_checkpoint`).
    resources : dict or None
        What the attempt asked of its worker (set by the executor that submits it): its
        ``"GPU"`` share decides the devices assigned to it (:mod:`daskhpo.devices`).
    """

    trial: int
    params: dict[str, Any]
    key: str
    topic: str | None = None
    checkpoint: tuple[str, Any] | None = None
    resources: Mapping[str, float] | None = None


@dataclass(frozen=True)
class TrialOutcome:
    """What one attempt of a trial produced.

    Attributes
    ----------
    record : TrialRecord
        The finished trial as the worker knows it (the engine adds submission time,
        attempts and lineage).
    reports : list
        Every ``(step, values)`` the objective reported, in order: none is lost even if
        its live message was.
    checkpoint : tuple or None
        The trial's last checkpoint (:func:`daskhpo.report`'s ``checkpoint=``).
    """

    record: TrialRecord
    reports: list[tuple[float, dict[str, float]]]
    checkpoint: tuple[str, Any] | None = None
    #: the checkpoint in force after each report, only when asked for
    #: (``run_trial(..., keep_checkpoints=True)``: what :func:`cut_short` needs)
    checkpoints: tuple | None = None


class _Deadline:
    """Interrupts the calling thread with :class:`TrialTimeout` after ``seconds``.

    The exception is delivered at the thread's next Python instruction: an objective
    blocked inside C code (a long numpy call, ``time.sleep``) is interrupted when that
    call returns.
    """

    def __init__(self, seconds: float | None) -> None:
        self._thread_id = threading.get_ident()
        self._lock = threading.Lock()
        self._armed = seconds is not None
        self._fired = False
        self._timer = threading.Timer(seconds, self._fire) if seconds is not None else None

    def _fire(self) -> None:
        with self._lock:
            if self._armed:
                self._fired = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._thread_id), ctypes.py_object(TrialTimeout))

    def __enter__(self) -> _Deadline:
        if self._timer is not None:
            self._timer.daemon = True
            self._timer.start()
        return self

    def disarm(self) -> None:
        with self._lock:
            self._armed = False
        if self._timer is not None:
            self._timer.cancel()

    def __exit__(self, *exc: Any) -> None:
        self.disarm()
        if self._fired:
            # Drop an exception injected after the objective returned but not yet delivered.
            # Only then: the call holds the GIL while it waits for CPython's thread-list
            # lock, and a thread holding that lock may be waiting for the GIL (Dask's
            # profiler in sys._current_frames, whose allocation runs Dask's gc callback,
            # which does I/O): calling it after every trial deadlocked a worker process.
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._thread_id), None)


def _current_worker() -> Any:
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def pruned(record: TrialRecord, reports: list[tuple[float, dict[str, float]]]) -> TrialRecord:
    """``record`` as a trial stopped after its last report: that report's values are its result."""
    if not reports:
        return record.replace(status="pruned", constraints=(), values=())
    step, values = reports[-1]
    values = dict(values)
    objective = values.pop("objective", math.nan)
    metrics = {k: v for k, v in values.items() if math.isfinite(v)}
    # what it returned, were it returned, is not its result: no constraints, no objective values
    return record.replace(status="pruned", objective=objective, metrics=metrics, last_step=step,
                          constraints=(), values=())


def preempted(record: TrialRecord, reports: list[tuple[float, dict[str, float]]]) -> TrialRecord:
    """``record`` as an attempt stopped by :class:`daskhpo.TrialPreempted` after its last report.

    Not a result: no objective, no metrics; the engine runs the trial again from the
    attempt's checkpoint.
    """
    step = reports[-1][0] if reports else math.nan
    return record.replace(status=PREEMPTED, objective=math.nan, metrics={}, constraints=(), values=(),
                          last_step=step, error=f"preempted after step {step:g}: its worker is leaving")


def timed_out(record: TrialRecord, timeout: float | None) -> TrialRecord:
    """``record`` as a trial interrupted by its ``trial_timeout``."""
    return record.replace(status="timeout", objective=math.nan, metrics={}, constraints=(), values=(),
                          error=f"trial exceeded trial_timeout={timeout} s")


def cut_short(outcome: TrialOutcome, reports: int, status: str, timeout: float | None = None) -> TrialOutcome:
    """``outcome`` as if its attempt had stopped right after its first ``reports`` reports.

    What a worker does when a trial is pruned (``status="pruned"``: :class:`TrialPruned`
    raised by the report a decision answered), preempted (``status="preempted"``:
    :class:`daskhpo.TrialPreempted` raised by the first report after its worker was told
    to leave) or interrupted by its deadline (``status="timeout"``), for an executor that ran the attempt to its end first and
    learns later where it stopped (the fake executor): the same record as
    :func:`run_trial` makes (:func:`pruned`, :func:`timed_out`), the reports made before
    the stop, and the checkpoint in force at the last of them (a trial pruned at step 4
    keeps its step-4 checkpoint, not a later one).  ``outcome`` must come from
    ``run_trial(..., keep_checkpoints=True)`` when it has checkpoints.
    """
    if status not in ("pruned", "timeout", PREEMPTED):
        raise ValueError(f"status must be 'pruned', 'timeout' or {PREEMPTED!r}, got {status!r}")
    kept = list(outcome.reports[: max(reports, 0)])
    checkpoint = None
    if kept:
        if outcome.checkpoints is None:
            if outcome.checkpoint is not None:
                raise ValueError("cut_short: the outcome kept no checkpoint per report (run_trial(keep_checkpoints=True))")
        else:
            checkpoint = outcome.checkpoints[len(kept) - 1]
    if status == "pruned":
        record = pruned(outcome.record, kept)
    elif status == PREEMPTED:
        record = preempted(outcome.record, kept)
    else:
        record = timed_out(outcome.record, timeout)
    if kept:
        record = record.replace(last_step=kept[-1][0])
    return TrialOutcome(record, kept, checkpoint, None if outcome.checkpoints is None else outcome.checkpoints[: len(kept)])


def _args(exc: BaseException) -> str:
    return f"({', '.join(repr(a) for a in exc.args)})" if exc.args else "()"


def claim_attempt(run: str | None, key: str) -> None:
    """Claim attempt ``key`` of run ``run`` on the scheduler before its objective runs.

    Every start of the attempt's task registers itself (a token under
    ``[CLAIMS, run, key]`` of the scheduler's metadata, acknowledged before anything else
    happens), then reads how many starts are registered: only the first start runs the
    objective.  Written before read, so that of any two starts, even racing ones, at most
    one sees itself alone: the objective runs at most once per attempt whatever the
    scheduler does with lost tasks, and a finished attempt recomputed because its worker
    died later is refused too.  Two round trips to the scheduler per attempt.  Nothing is
    claimed outside a Dask worker or without a run (``run=None``: in-process executors).
    An attempt the executor cancelled carries a tombstone (:data:`CANCELLED`) among its
    claims: a start that reads it refuses to run (a cancelled task already past its claim
    cannot be stopped; one that claims later, e.g. the old attempt of a re-targeted trial,
    is).

    Raises
    ------
    AttemptLost
        This start is not the attempt's first, or the scheduler could not be asked.
    """
    worker = _current_worker()
    if worker is None or run is None:
        return
    from distributed.utils import sync

    path = [CLAIMS, run, key]
    token = uuid.uuid4().hex

    async def claim() -> Any:
        await worker.scheduler.set_metadata(keys=[*path, token], value=worker.address)
        return await worker.scheduler.get_metadata(keys=path, default={})

    try:
        starts = sync(worker.loop, claim)
    except Exception as exc:  # the scheduler unreachable: a lost attempt, not a broken trial
        raise AttemptLost(f"attempt {key} could not be claimed on the scheduler ({type(exc).__name__}: {exc})") from exc
    if not starts:  # the run released its claims meanwhile (it ended): its tasks are cancelled
        raise AttemptLost(f"attempt {key} started after its run ended")
    if CANCELLED in starts:  # the loop gave it up (e.g. re-targeted it) before it started
        raise AttemptLost(f"attempt {key} started after it was cancelled")
    if len(starts) > 1:
        raise AttemptLost(f"attempt {key} started again on {worker.address} after its first start on "
                          f"{next(iter(starts.values()))}, whose worker left (or it had finished): "
                          "an attempt runs at most once")


def run_attempt(
    fn: Callable[..., Any], task: TrialTask, fn_kwargs: Mapping[str, Any], timeout: float | None = None
) -> TrialOutcome:
    """:func:`run_trial` once :func:`claim_attempt` allows it: the task an executor submits."""
    claim_attempt(task.topic, task.key)
    return run_trial(fn, task, fn_kwargs, timeout)


def run_trial(
    fn: Callable[..., Any],
    task: TrialTask,
    fn_kwargs: Mapping[str, Any],
    timeout: float | None = None,
    keep_checkpoints: bool = False,
) -> TrialOutcome:
    """Run one attempt of a trial and describe its outcome as plain data.

    Exceptions and invalid results are caught here, on the worker, so that they reach the
    client as data (with the traceback as text) rather than as remote exceptions that may
    not even unpickle on the client.  ``timeout`` counts from the trial's start on the
    worker, not from its submission, so queueing never counts against a trial.

    With a ``topic``, the start is announced as an event ``{"key": <task key>, "worker":
    <address>}`` on it.
    An executor on Dask submits :func:`run_attempt`, which first claims the attempt on the
    scheduler (:func:`claim_attempt`): a task the scheduler starts again after its worker
    left never reaches this function, so the objective runs at most once per attempt.  The objective
    may call :func:`daskhpo.report`; a trial stopped by :class:`daskhpo.TrialPruned` is
    ``pruned`` with its last reported values; one stopped by :class:`daskhpo.TrialPreempted`
    (its worker leaving: :func:`daskhpo.preempt_trials`) is ``preempted`` with its
    reports so far and its latest checkpoint.  ``keep_checkpoints`` keeps the checkpoint
    in force after each report in :attr:`TrialOutcome.checkpoints` (for :func:`cut_short`).
    A trial whose ``task.resources`` ask for a ``"GPU"`` share runs on devices assigned to
    it among the worker's (:func:`daskhpo.devices.trial_devices`), recorded in ``gpu`` and
    given to the objective by :func:`daskhpo.current_trial_devices`.

    Whatever the objective raises makes the trial ``broken`` with the traceback:
    ``SystemExit`` (``sys.exit()``), ``KeyboardInterrupt`` raised by the objective on a
    worker thread and any other ``BaseException`` included, so that an objective cannot take
    its worker process down.  Only a ``KeyboardInterrupt`` on the main thread (an in-process
    executor: the user's Ctrl-C) goes through.  ``os._exit()`` and signals cannot be caught:
    the worker dies, the attempt is lost and the trial runs again within ``retries``.
    """
    worker = _current_worker()
    if task.topic and worker is not None:
        worker.log_event(task.topic, {"key": task.key, "worker": worker.address})
    with trial_devices(task.resources, worker) as devices:
        return _run(fn, task, fn_kwargs, timeout, keep_checkpoints, worker, devices)


def _run(fn: Callable[..., Any], task: TrialTask, fn_kwargs: Mapping[str, Any], timeout: float | None,
         keep_checkpoints: bool, worker: Any, devices: Any) -> TrialOutcome:
    """:func:`run_trial` on the trial's devices (``None``: none assigned)."""
    record = TrialRecord(
        trial=task.trial,
        params=dict(task.params),
        status="broken",
        worker=None if worker is None else worker.address,
        # the devices assigned to it, else what the process sees (a job's GPUs, or None)
        gpu=os.environ.get("CUDA_VISIBLE_DEVICES") if devices is None else devices.cuda_visible_devices,
        started=time.time(),
    )
    context = {"trial": task.trial, "key": task.key, "topic": task.topic, "checkpoint": task.checkpoint,
               "keep_checkpoints": keep_checkpoints, "devices": devices}
    reports: list = []
    with trial_context(context) as ctx:
        try:
            with _Deadline(timeout) as deadline:
                try:
                    value = fn(**task.params, **fn_kwargs)
                finally:
                    deadline.disarm()
            result = parse_result(value, params=task.params)
            record = record.replace(objective=result.objective, metrics=result.metrics,
                                    constraints=result.constraints, values=result.values)
            if result.finite:
                record = record.replace(status="completed")
            else:
                record = record.replace(error=f"objective is {result.objective}")
        except TrialTimeout:
            record = timed_out(record, timeout)
        except TrialPruned:
            record = pruned(record, ctx.reports)
        except TrialPreempted:
            record = preempted(record, ctx.reports)
        except InvalidResult as exc:
            record = record.replace(error=f"InvalidResult: {exc}")
        except Exception:
            record = record.replace(error=traceback.format_exc(limit=-20))
        except BaseException as exc:  # SystemExit, KeyboardInterrupt, GeneratorExit, CancelledError
            if isinstance(exc, KeyboardInterrupt) and threading.current_thread() is threading.main_thread():
                raise  # in-process, on the main thread: the user's Ctrl-C, which stops the run
            # Raised by the objective on a worker thread: it would take the worker process
            # down (and its trial, re-run, the next one): the trial is broken, the worker lives.
            record = record.replace(error=f"the objective raised {type(exc).__name__}{_args(exc)}, which ends "
                                          f"the trial as broken, not the worker\n{traceback.format_exc(limit=-20)}")
        reports = [(float(step), dict(values)) for step, values in ctx.reports]
    if reports:
        record = record.replace(last_step=reports[-1][0])
    checkpoints = None if ctx.checkpoints is None else tuple(ctx.checkpoints)
    return TrialOutcome(record.replace(ended=time.time()), reports, ctx.checkpoint, checkpoints)
