"""Reporting from inside a running objective: intermediate results, checkpoints, pruning.

This module runs on the workers.  :func:`daskhpo.engine.run_trial` opens a trial context
(:func:`trial_context`) around the objective; inside it

* :func:`report` appends the values to the trial's own list (which travels back with the
  trial's result, so that no report is ever lost) and publishes them at once on the
  engine's topic with :meth:`distributed.Worker.log_event`.  That is a message on the
  worker's already-open batched stream to the scheduler, which forwards it to the
  subscribed client: no new connection, no round trip, nothing waited for.
* The engine answers a decision to prune with :meth:`distributed.Client.run` of
  :func:`stop_trial` on that one worker, which sets the trial's stop flag in this
  process.  The next :func:`report` sees the flag and raises :class:`TrialPruned`.  The
  flag lives in the trial context, which is removed when the trial returns: a late stop
  for a trial that already ended finds nothing and leaves nothing behind.
* ``checkpoint=`` keeps the trial's latest state (pickled at once, or the path of a
  directory); it travels back with the trial's result, once.
  :func:`load_checkpoint` gives the state the trial was started from.
* When the worker is about to leave (a Slurm job's walltime or preemption signal), the
  worker side calls :func:`preempt_trials`, which sets a "checkpoint and stop" flag on every
  trial running in this process.  The next :func:`report` of each (after keeping that
  call's ``checkpoint=``) raises :class:`TrialPreempted`; the attempt ends ``preempted``
  with its checkpoint, and the engine runs the same trial again elsewhere from it.  A trial
  that never reports is not stopped: it dies with its worker and runs again from zero.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import os
import pickle
import threading
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

from .results import InvalidResult, checked_number

__all__ = ["TrialPruned", "TrialPreempted", "preempt_trials", "report", "load_checkpoint", "current_trial",
           "current_trial_devices", "trial_context", "stop_trial", "release_trial"]

logger = logging.getLogger(__name__)


class TrialPruned(Exception):
    """Raised by :func:`report` when the search decided to stop this trial.

    Let it propagate out of the objective: the trial is then recorded as ``pruned``
    with its last reported values.  An objective may also raise it itself.
    """


class TrialPreempted(Exception):
    """Raised by :func:`report` when this trial's worker is about to leave (see :func:`preempt_trials`).

    Let it propagate out of the objective: the attempt then ends with the checkpoint of
    the report that raised it (or the latest one before), and the engine runs the same
    trial (same id and parameters) again on another worker, where
    :func:`load_checkpoint` returns that checkpoint.  Not a failure: it is never counted
    broken, nor against ``retries``.
    """


@dataclass
class _TrialContext:
    trial: int
    key: str
    topic: str | None
    start: tuple[str, Any] | None
    address: str | None = None
    worker: Any = None
    stop: bool = False
    #: the worker is leaving: checkpoint and stop at the next report
    preempt: bool = False
    reports: list[list] = field(default_factory=list)
    checkpoint: tuple[str, Any] | None = None
    #: set when the decision on the report waited for (``report(wait=...)``) arrives
    decided: threading.Event = field(default_factory=threading.Event)
    #: the step of the report that waits for its decision, if any
    waiting: float | None = None
    #: the checkpoint in force after each report, when the context keeps them (for an
    #: executor that replays a trial and cuts it short later: the fake executor)
    checkpoints: list | None = None
    #: the GPU(s) assigned to the trial (a :class:`daskhpo.devices.TrialDevices`), if any
    devices: Any = None


#: contexts of the trials running in this process, by task key (what stop_trial finds)
_ACTIVE: dict[str, _TrialContext] = {}
_ACTIVE_LOCK = threading.Lock()
_CURRENT: contextvars.ContextVar[_TrialContext | None] = contextvars.ContextVar("daskhpo_trial", default=None)


def encode_checkpoint(state: Any) -> tuple[str, Any]:
    """A checkpoint as it is stored: ``("path", dir)`` for a directory, else pickled bytes."""
    if isinstance(state, (str, os.PathLike)) and os.path.isdir(state):
        return ("path", os.path.abspath(os.fspath(state)))
    try:
        # cloudpickle, as Dask sends functions: a class of ``__main__`` or of a notebook cell
        # (which reaches a worker process by value) pickles by value too.  Its output is a
        # plain pickle stream, so pickle.loads reads it, and checkpoints of older versions.
        return ("pickle", cloudpickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception as exc:
        raise TypeError(
            f"daskhpo.report(checkpoint=...): {type(state).__name__} cannot be pickled ({exc}); "
            "save it yourself and pass the directory's path instead"
        ) from None


def decode_checkpoint(stored: tuple[str, Any] | None) -> Any:
    """The state of a stored checkpoint (a fresh copy each call)."""
    if stored is None:
        return None
    kind, data = stored
    return data if kind == "path" else pickle.loads(data)


@contextlib.contextmanager
def trial_context(context: Mapping[str, Any] | None) -> Iterator[_TrialContext | None]:
    """Make :func:`report` and :func:`load_checkpoint` work for the enclosed objective call.

    ``context`` holds ``trial`` (id), ``key`` (unique per attempt), ``topic`` (where
    reports are published; ``None``: only collected) and ``checkpoint`` (the stored start
    state, or ``None``); ``keep_checkpoints`` (optional) keeps the checkpoint in force
    after each report, not only the last; ``devices`` (optional) the trial's GPU(s)
    (:func:`current_trial_devices`).
    """
    if context is None:
        yield None
        return
    ctx = _TrialContext(int(context["trial"]), str(context["key"]), context.get("topic"), context.get("checkpoint"))
    if context.get("keep_checkpoints"):
        ctx.checkpoints = []
    ctx.devices = context.get("devices")
    try:
        from distributed import get_worker

        ctx.worker = get_worker()
        ctx.address = ctx.worker.address
    except ValueError:
        ctx.topic = None  # not on a Dask worker: nothing to publish to
    with _ACTIVE_LOCK:
        _ACTIVE[ctx.key] = ctx
    token = _CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        _CURRENT.reset(token)
        with _ACTIVE_LOCK:
            _ACTIVE.pop(ctx.key, None)


def stop_trial(key: str) -> bool:
    """Set the stop flag of the trial running as task ``key`` in this process, if any.

    The seam through which an executor prunes a trial where it runs (the Dask executor
    calls it on the trial's worker with ``Client.run``).  Returns whether a trial of that
    key runs here.
    """
    ctx = _ACTIVE.get(key)
    if ctx is None:
        return False
    ctx.stop = True
    ctx.decided.set()  # a report waiting for its decision raises TrialPruned at once
    return True


def preempt_trials() -> int:
    """Ask every trial running in this process to checkpoint and stop; returns how many.

    What a worker about to leave calls (e.g. on Slurm's warning signal before its job's
    end): the next :func:`report` of each running trial keeps its ``checkpoint=`` and
    raises :class:`TrialPreempted`; a report waiting for its decision (``wait=``) raises
    at once.  Trials that never report are not affected (they end with the worker and
    run again from zero).  Safe to call from any thread, and more than once.
    """
    with _ACTIVE_LOCK:
        contexts = list(_ACTIVE.values())
    for ctx in contexts:
        ctx.preempt = True
        ctx.decided.set()
    return len(contexts)


def _stop_here(ctx: _TrialContext, step: float) -> None:
    """Raise what a report at ``step`` must raise once the trial was pruned or preempted."""
    if ctx.stop:
        raise TrialPruned(f"trial {ctx.trial} was pruned (at step {step:g})")
    if ctx.preempt:
        raise TrialPreempted(f"trial {ctx.trial} was preempted (at step {step:g}): its worker is leaving")


def release_trial(key: str, step: float) -> bool:
    """Let the trial of task ``key`` go on, if its report at ``step`` waits for its decision.

    Returns whether a trial of that key waited here on that step.
    """
    ctx = _ACTIVE.get(key)
    if ctx is None or ctx.waiting != step:
        return False  # ended, or a late answer to a wait that timed out: not this report's
    ctx.decided.set()
    return True


#: how long ``report(wait=True)`` waits for its decision, in seconds
WAIT_S = 60.0


def _await_decision(ctx: _TrialContext, step: float, timeout: float) -> None:
    # In short slices: a trial_timeout (an exception set asynchronously) is only
    # delivered between Python instructions, never inside one long Event.wait.
    remaining = timeout
    while remaining > 0 and not ctx.decided.wait(min(remaining, 0.05)):
        remaining -= 0.05
    if not ctx.decided.is_set():
        logger.warning("trial %d: no decision on its report at step %g within %g s; going on", ctx.trial, step, timeout)
    ctx.waiting = None


#: the names this seam had before it was public
_stop_trial, _release_trial = stop_trial, release_trial


def active_trials() -> int:
    """Trial contexts open in this process (0 between trials: nothing leaks)."""
    return len(_ACTIVE)


def report(
    step: float, objective: float | None = None, *, checkpoint: Any = None, wait: bool | float = False, **metrics: float
) -> None:
    """Report an intermediate result of the running trial; maybe learn it should stop.

    Parameters
    ----------
    step : int or float
        Where the trial is: an epoch, or the resource used so far.  Multi-fidelity
        algorithms read it as the resource (ASHA's rungs are steps).
    objective : float, optional
        The value to minimize at this step (e.g. the validation loss).
    checkpoint : object, optional
        The trial's state at this step: any picklable object (pickled now), or the path
        of a directory holding it (for large models; it must be readable wherever a
        later trial may run).  Only the latest is kept.  Promotions and PBT start later
        trials from it (see :func:`load_checkpoint`).
    wait : bool or float, default False
        Wait for the search's decision on this report before returning: ``True`` (up to
        ``daskhpo.reporting.WAIT_S``, 60 s) or a number of seconds.  A prune then raises
        :class:`TrialPruned` from this very call, so that the next step never runs; without
        it the decision arrives while the next step runs and stops the trial at the
        following report.  The cost: one round trip from the trial to the search and back
        per call (a few milliseconds on a local cluster; see ``docs/reporting.md``), and the
        worker's thread idles meanwhile.  Worth it when a step takes much longer than that.
        Only on a Dask worker (elsewhere the decision is not known to the trial: no wait).
        If no decision comes in time (a search busy for longer), the trial goes on.
    **metrics : float
        Other numbers to record at this step.

    Raises
    ------
    TrialPruned
        When the search decided to stop this trial (asynchronously: at the first report
        after the decision).  Let it propagate.
    TrialPreempted
        When the trial's worker is leaving (:func:`preempt_trials`): this call's
        checkpoint is kept and the trial goes on elsewhere from it.  Let it propagate.
    ValueError
        For a step or a value that is not a real number.

    Notes
    -----
    Outside a trial run by daskhpo (the objective called directly) this does nothing
    but warn, so the same function runs standalone.  Call it from the thread that runs
    the objective (threads the objective starts do not see its trial).  A call costs a
    few microseconds (see ``benchmarks/multifidelity.py``), plus pickling ``checkpoint``.  The values go into the history's
    ``reported_<name>`` variables along the ``step`` dimension.
    """
    ctx = _CURRENT.get()
    if ctx is None:
        warnings.warn("daskhpo.report() called outside a daskhpo trial: ignored", RuntimeWarning, stacklevel=2)
        return
    try:
        step = checked_number("step", step)
        values = {k: checked_number(k, v) for k, v in metrics.items()}
        values["objective"] = math.nan if objective is None else checked_number("objective", objective)
    except InvalidResult as exc:
        raise ValueError(f"daskhpo.report(): {exc}") from None
    if not math.isfinite(step):
        raise ValueError(f"daskhpo.report(): step must be finite, got {step!r}")
    timeout = _wait_seconds(wait)
    if checkpoint is not None:
        ctx.checkpoint = encode_checkpoint(checkpoint)
    ctx.reports.append([step, values])
    if ctx.checkpoints is not None:
        ctx.checkpoints.append(ctx.checkpoint)
    _stop_here(ctx, step)
    if ctx.topic is not None:
        message = {"trial": ctx.trial, "key": ctx.key, "worker": ctx.address, "step": step, "values": values}
        if timeout:
            # armed before the report leaves, so that no decision can come before the wait
            ctx.decided.clear()
            ctx.waiting = message["wait"] = step
        ctx.worker.log_event(ctx.topic, message)
        if timeout:
            _await_decision(ctx, step, timeout)
            _stop_here(ctx, step)


def _wait_seconds(wait: bool | float) -> float:
    if wait is True:
        return WAIT_S
    if wait is False or wait is None:
        return 0.0
    try:
        seconds = checked_number("wait", wait)
    except InvalidResult:
        seconds = math.nan
    if not seconds >= 0:
        raise ValueError(f"daskhpo.report(): wait must be True, False or seconds >= 0, got {wait!r}")
    return seconds  # 0: do not wait, as False


def current_trial() -> int | None:
    """The id of the trial running in this thread, or ``None`` outside a daskhpo trial."""
    ctx = _CURRENT.get()
    return None if ctx is None else ctx.trial


def current_trial_devices() -> Any:
    """The GPU(s) assigned to the trial running in this thread, or ``None``.

    A :class:`daskhpo.devices.TrialDevices` (``ids`` as in ``CUDA_VISIBLE_DEVICES``,
    ``ordinals`` for ``cuda:<i>`` in this process, ``share``) when the trial's resources ask
    for a ``"GPU"`` share and its worker has devices; ``None`` otherwise and outside a trial.
    The worker's own ``CUDA_VISIBLE_DEVICES`` is not changed (its threads share it): an
    in-process objective picks ``cuda:<ordinal>``, a program it starts gets
    ``env=devices.environ()``.
    """
    ctx = _CURRENT.get()
    return None if ctx is None else ctx.devices


def load_checkpoint() -> Any:
    """The state this trial starts from, or ``None`` for a fresh start.

    Returns what an earlier trial passed as ``report(..., checkpoint=...)`` when the search
    started this trial from it (an ASHA promotion, a PBT member's next segment or an
    exploit): the unpickled object, or the directory path.  Outside a trial: ``None``.
    """
    ctx = _CURRENT.get()
    if ctx is None:
        return None
    return decode_checkpoint(ctx.start)
