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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..records import TrialRecord
from ..reporting import TrialPruned, trial_context
from ..results import InvalidResult, parse_result

__all__ = ["TrialTask", "TrialOutcome", "TrialTimeout", "run_trial", "pruned", "timed_out", "cut_short"]


class TrialTimeout(BaseException):
    """Raised inside an objective that ran past ``trial_timeout``.

    A ``BaseException``, so that an objective's own ``except Exception`` does not
    swallow it.
    """


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
    """

    trial: int
    params: dict[str, Any]
    key: str
    topic: str | None = None
    checkpoint: tuple[str, Any] | None = None


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


def timed_out(record: TrialRecord, timeout: float | None) -> TrialRecord:
    """``record`` as a trial interrupted by its ``trial_timeout``."""
    return record.replace(status="timeout", objective=math.nan, metrics={}, constraints=(), values=(),
                          error=f"trial exceeded trial_timeout={timeout} s")


def cut_short(outcome: TrialOutcome, reports: int, status: str, timeout: float | None = None) -> TrialOutcome:
    """``outcome`` as if its attempt had stopped right after its first ``reports`` reports.

    What a worker does when a trial is pruned (``status="pruned"``: :class:`TrialPruned`
    raised by the report a decision answered) or interrupted by its deadline
    (``status="timeout"``), for an executor that ran the attempt to its end first and
    learns later where it stopped (the fake executor): the same record as
    :func:`run_trial` makes (:func:`pruned`, :func:`timed_out`), the reports made before
    the stop, and the checkpoint in force at the last of them (a trial pruned at step 4
    keeps its step-4 checkpoint, not a later one).  ``outcome`` must come from
    ``run_trial(..., keep_checkpoints=True)`` when it has checkpoints.
    """
    if status not in ("pruned", "timeout"):
        raise ValueError(f"status must be 'pruned' or 'timeout', got {status!r}")
    kept = list(outcome.reports[: max(reports, 0)])
    checkpoint = None
    if kept:
        if outcome.checkpoints is None:
            if outcome.checkpoint is not None:
                raise ValueError("cut_short: the outcome kept no checkpoint per report (run_trial(keep_checkpoints=True))")
        else:
            checkpoint = outcome.checkpoints[len(kept) - 1]
    record = pruned(outcome.record, kept) if status == "pruned" else timed_out(outcome.record, timeout)
    if kept:
        record = record.replace(last_step=kept[-1][0])
    return TrialOutcome(record, kept, checkpoint, None if outcome.checkpoints is None else outcome.checkpoints[: len(kept)])


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

    With a ``topic``, the start is announced as an event ``{"key": <task key>}`` on it:
    when a worker leaves mid-trial (a Slurm job cancelled, preempted or at its walltime)
    the scheduler silently runs the task again elsewhere, and these events are how the
    engine counts such attempts.  (The event leaves with the worker's next message batch,
    within milliseconds: a worker that dies sooner than that goes uncounted, and the
    scheduler's own limit, ``allowed-failures``, still bounds its re-runs.)  The objective
    may call :func:`daskhpo.report`; a trial stopped by :class:`daskhpo.TrialPruned` is
    ``pruned`` with its last reported values.  ``keep_checkpoints`` keeps the checkpoint
    in force after each report in :attr:`TrialOutcome.checkpoints` (for :func:`cut_short`).
    """
    worker = _current_worker()
    if task.topic and worker is not None:
        worker.log_event(task.topic, {"key": task.key})
    record = TrialRecord(
        trial=task.trial,
        params=dict(task.params),
        status="broken",
        worker=None if worker is None else worker.address,
        gpu=os.environ.get("CUDA_VISIBLE_DEVICES"),
        started=time.time(),
    )
    context = {"trial": task.trial, "key": task.key, "topic": task.topic, "checkpoint": task.checkpoint,
               "keep_checkpoints": keep_checkpoints}
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
        except InvalidResult as exc:
            record = record.replace(error=f"InvalidResult: {exc}")
        except Exception:
            record = record.replace(error=traceback.format_exc(limit=-20))
        reports = [(float(step), dict(values)) for step, values in ctx.reports]
    if reports:
        record = record.replace(last_step=reports[-1][0])
    checkpoints = None if ctx.checkpoints is None else tuple(ctx.checkpoints)
    return TrialOutcome(record.replace(ended=time.time()), reports, ctx.checkpoint, checkpoints)
