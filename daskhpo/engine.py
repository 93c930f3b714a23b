"""The asynchronous loop on the Dask client.

The engine keeps ``n_workers`` trials in flight with ``client.submit(..., pure=False)``
and reacts to each future as it completes (:class:`distributed.as_completed`): record the
outcome, let the caller tell the optimizer, submit the next trial.  It knows futures,
resources, retries and time-outs, and nothing about any particular algorithm: trials come
from a ``suggest`` callable and outcomes go to a ``record`` callable.

Intermediate reports (:func:`daskhpo.report`) travel from the workers on one pub/sub topic
per run (``Worker.log_event`` → ``Client.subscribe_topic``) and go to an ``on_report``
callable that answers ``"continue"`` or ``"prune"``; a prune sets the trial's stop flag on
its worker with ``Client.run`` (see :mod:`daskhpo.reporting`).  Reports are handled on the
client's event loop thread, but never at the same time as ``record`` or ``suggest``: a lock
held by the loop, and a queue drained by whichever thread lets go of it.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import queue
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from distributed import Client, Future, as_completed
from distributed.client import FutureCancelledError

from .reporting import TrialPruned, _stop_trial, trial_context
from .results import InvalidResult, parse_result

__all__ = ["Engine", "TooManyBrokenTrials", "NoWorkersError", "TrialTimeout", "run_trial"]

logger = logging.getLogger(__name__)


class TooManyBrokenTrials(RuntimeError):
    """More trials broke (raised, returned garbage, timed out, were lost) than allowed."""


class NoWorkersError(RuntimeError):
    """No Dask worker became available in time."""


def _current_worker() -> Any:
    try:
        from distributed import get_worker

        return get_worker()
    except ValueError:
        return None


class TrialTimeout(BaseException):
    """Raised inside an objective that ran past ``trial_timeout``.

    A ``BaseException``, so that an objective's own ``except Exception`` does not
    swallow it.
    """


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
        self._timer = threading.Timer(seconds, self._fire) if seconds is not None else None

    def _fire(self) -> None:
        with self._lock:
            if self._armed:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(self._thread_id), ctypes.py_object(TrialTimeout)
                )

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
        # Drop an exception injected after the objective returned but not yet delivered.
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._thread_id), None)


def run_trial(
    fn: Callable[..., Any],
    params: Mapping[str, Any],
    fn_kwargs: Mapping[str, Any],
    timeout: float | None = None,
    context: Mapping[str, Any] | None = None,
) -> dict:
    """Run one trial on a worker and describe its outcome as plain data.

    Exceptions and invalid results are caught here, on the worker, so that they reach the
    client as data (with the traceback as text) rather than as remote exceptions that may
    not even unpickle on the client.  ``timeout`` counts from the trial's start on the
    worker, not from its submission, so queueing never counts against a trial.

    With a ``context`` (see :func:`daskhpo.reporting.trial_context`) the start is announced
    as an event ``{"key": <task key>}`` on the run's topic: when a worker leaves mid-trial
    (a Slurm job cancelled, preempted or at its walltime) the scheduler silently runs the
    task again elsewhere, and these events are how the engine counts such attempts.  (The
    event leaves with the worker's next message batch, within milliseconds: a worker that
    dies sooner than that goes uncounted, and the scheduler's own limit,
    ``allowed-failures``, still bounds its re-runs.)  The objective may then call
    :func:`daskhpo.report`; the outcome also holds every report (``reports``: ``[step,
    values]`` pairs), the last checkpoint (``checkpoint``), and a trial stopped by
    :class:`TrialPruned` is ``pruned`` with its last reported values.
    """
    worker = _current_worker()
    if context is not None and context.get("topic") and worker is not None:
        worker.log_event(context["topic"], {"key": context["key"]})
    outcome: dict[str, Any] = {
        "worker": None if worker is None else worker.address,
        "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "started": time.time(),
        "objective": math.nan,
        "metrics": {},
        "error": None,
    }
    with trial_context(context) as ctx:
        try:
            with _Deadline(timeout) as deadline:
                try:
                    value = fn(**params, **fn_kwargs)
                finally:
                    deadline.disarm()
            objective, metrics = parse_result(value)
            outcome["objective"], outcome["metrics"] = objective, metrics
            if math.isfinite(objective):
                outcome["status"] = "completed"
            else:
                outcome["status"], outcome["error"] = "broken", f"objective is {objective}"
        except TrialTimeout:
            outcome["status"], outcome["error"] = "timeout", f"trial exceeded trial_timeout={timeout} s"
        except TrialPruned:
            outcome["status"] = "pruned"
            if ctx is not None and ctx.reports:
                values = dict(ctx.reports[-1][1])
                outcome["objective"] = values.pop("objective")
                outcome["metrics"] = {k: v for k, v in values.items() if math.isfinite(v)}
        except InvalidResult as exc:
            outcome["status"], outcome["error"] = "broken", f"InvalidResult: {exc}"
        except Exception:
            outcome["status"], outcome["error"] = "broken", traceback.format_exc(limit=-20)
    if ctx is not None:
        outcome["reports"] = ctx.reports
        outcome["checkpoint"] = ctx.checkpoint
    outcome["ended"] = time.time()
    return outcome


def _last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else ""


class _Relay:
    """The topic handler of one run; detached (``target=None``) when the run ends."""

    def __init__(self, target: Callable[[Any], None]) -> None:
        self.target: Callable[[Any], None] | None = target

    def __call__(self, event: Any) -> None:
        if self.target is not None:
            self.target(event)


@dataclass
class _InFlight:
    trial_id: int
    params: dict[str, Any]
    submitted: float
    attempts: int = 1
    #: set when the scheduler re-ran the trial more often than ``retries`` allows
    exhausted: bool = False
    #: "parent"/"checkpoint" ids (recorded) and "state" (the start checkpoint, shipped)
    extra: dict[str, Any] = field(default_factory=dict)
    key: str = ""
    #: steps whose reports the caller has been given
    seen: set = field(default_factory=set)
    stopping: bool = False


class Engine:
    """Runs trials of one objective on a Dask cluster.

    Parameters
    ----------
    client : distributed.Client
    fn : callable
        The objective, called as ``fn(**params, **fn_kwargs)`` on a worker.
    n_workers : int, optional
        Trials in flight.  Default: the threads of the connected workers (that have the
        requested ``resources``), waiting up to ``worker_timeout`` for a first worker.
        Give it explicitly for adaptive clusters: queued trials are what makes them grow.
    resources : dict, optional
        Dask resource annotation of every trial, e.g. ``{"GPU": 1}``.
    retries : int
        Further attempts of a trial whose worker died or left mid-trial (a Slurm job
        cancelled, preempted, at its walltime): the scheduler's own re-runs count, as do
        the engine's resubmissions.  Beyond them the trial is recorded ``lost``.
    trial_timeout : float, optional
        Seconds, from its start on the worker, after which a trial is interrupted and
        recorded as ``timeout``.
    max_broken : int
        The run stops with :class:`TooManyBrokenTrials` once more trials than this broke.
    fn_kwargs : dict, optional
        Fixed keyword arguments of every call.
    worker_timeout : float
        Seconds without any connected worker, at the start or later in the run, before
        :class:`NoWorkersError`.
    """

    def __init__(
        self,
        client: Client,
        fn: Callable[..., Any],
        *,
        n_workers: int | None = None,
        resources: Mapping[str, float] | None = None,
        retries: int = 1,
        trial_timeout: float | None = None,
        max_broken: int = 3,
        fn_kwargs: Mapping[str, Any] | None = None,
        worker_timeout: float = 60.0,
    ) -> None:
        if n_workers is not None and (not isinstance(n_workers, int) or n_workers < 1):
            raise ValueError(f"n_workers must be a positive integer, got {n_workers!r}")
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
        if trial_timeout is not None and not trial_timeout > 0:
            raise ValueError(f"trial_timeout must be positive seconds, got {trial_timeout!r}")
        if not isinstance(max_broken, int) or max_broken < 0:
            raise ValueError(f"max_broken must be a non-negative integer, got {max_broken!r}")
        self.client = client
        self.fn = fn
        self.resources = dict(resources) if resources else None
        self.retries = retries
        self.trial_timeout = trial_timeout
        self.max_broken = max_broken
        self.fn_kwargs = dict(fn_kwargs or {})
        self.worker_timeout = worker_timeout
        self.n_workers = n_workers if n_workers is not None else self._default_slots()
        self._no_workers = threading.Event()
        self._topic = f"daskhpo-events-{uuid.uuid4().hex}"
        self._by_key: dict[str, tuple[Future, _InFlight]] = {}
        self._starts: dict[str, int] = {}

    # -- sizing ------------------------------------------------------------------------
    def _slots(self) -> int:
        workers = self.client.scheduler_info(n_workers=-1)["workers"].values()
        if not self.resources:
            return sum(w["nthreads"] for w in workers)
        total = 0
        for w in workers:
            have = w.get("resources", {})
            fits = min(int(have.get(k, 0) // v) for k, v in self.resources.items() if v > 0)
            total += min(fits, w["nthreads"])
        return total

    def _default_slots(self) -> int:
        if not self.client.scheduler_info(n_workers=-1)["workers"]:
            logger.info("No Dask worker connected yet: waiting up to %.0f s", self.worker_timeout)
            try:
                self.client.wait_for_workers(1, timeout=self.worker_timeout)
            except TimeoutError:
                raise NoWorkersError(
                    f"no Dask worker connected within {self.worker_timeout:.0f} s; check that "
                    "the cluster's jobs start (e.g. squeue, the job logs), or pass n_workers= "
                    "so that an adaptive cluster sees queued trials and scales up"
                ) from None
        slots = self._slots()
        if slots < 1:
            raise NoWorkersError(f"no connected worker has the resources {self.resources}")
        return slots

    def _watch_for_workers(self) -> threading.Event:
        """Fail the run once no worker has been connected for ``worker_timeout`` seconds.

        At the start (Slurm jobs that never start) and during the run (every job ended at
        its walltime, or the workers crashed): trials would otherwise wait forever.  Set the
        returned event to stop watching.
        """
        stop = threading.Event()
        connected_at_start = bool(self.client.scheduler_info(n_workers=-1)["workers"])
        if not connected_at_start:
            logger.info(
                "No Dask worker connected yet: %d trials queued, waiting up to %.0f s",
                self.n_workers,
                self.worker_timeout,
            )

        def watch() -> None:
            last_seen = time.monotonic()
            had_workers = connected_at_start
            while not stop.wait(min(1.0, self.worker_timeout / 4)):
                try:
                    connected = bool(self.client.nthreads())
                except Exception:  # the client is closing: the run ends anyway
                    return
                now = time.monotonic()
                if connected:
                    last_seen, had_workers = now, True
                    continue
                if had_workers and now - last_seen > 1.0:
                    logger.warning("No Dask worker connected: waiting up to %.0f s for one", self.worker_timeout)
                    had_workers = False
                if now - last_seen >= self.worker_timeout:
                    self._no_workers.set()
                    for future in list(self._running):
                        future.cancel()
                    return

        thread = threading.Thread(target=watch, name="daskhpo-worker-watchdog", daemon=True)
        thread.start()
        return stop

    # -- the loop ----------------------------------------------------------------------
    def run(
        self,
        suggest: Callable[[], tuple | None],
        record: Callable[[dict], None],
        budget: int | None = None,
        on_report: Callable[[dict], str] | None = None,
    ) -> int:
        """Run trials until ``budget`` trials finished or ``suggest`` has nothing more.

        Parameters
        ----------
        suggest : callable
            Returns ``(trial_id, params)`` or ``(trial_id, params, extra)`` for the next
            trial, or ``None``.  ``extra`` may hold ``parent`` and ``checkpoint`` (trial
            ids, copied into the record) and ``state`` (the stored checkpoint the trial
            starts from, shipped to its worker for :func:`daskhpo.load_checkpoint`).
        record : callable
            Receives each finished trial's record (a dict with ``trial``, ``params``,
            ``status``, ``objective``, ``metrics``, times, ``worker``, ``gpu``,
            ``attempts``, ``error``, ``parent``, ``checkpoint``, ``last_step``, and
            ``state``: the trial's last checkpoint or ``None``); called before the next
            trial is suggested.
        budget : int, optional
            Finished (completed or pruned) trials after which no more are submitted.
        on_report : callable, optional
            Receives each intermediate report (a dict with ``trial``, ``params``,
            ``step`` and ``values``) and returns ``"continue"`` or ``"prune"``.  Reports
            arrive while trials run (on the client's event loop thread, never at the
            same time as ``record`` or ``suggest``); reports that had not arrived when
            their trial ended are given (in step order) just before its ``record``.
            Without it, :func:`daskhpo.report` only collects values into the record.

        Returns
        -------
        int
            The number of trials that finished (completed or pruned).
        """
        self._running: dict[Future, _InFlight] = {}
        self._by_trial: dict[int, _InFlight] = {}
        self._by_key, self._starts = {}, {}
        self._queue = as_completed(loop=self.client.loop, with_results=True, raise_errors=False)
        self._on_report = on_report
        self._lock = threading.Lock()
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        finished = broken = 0
        # One topic per run (not per trial): the scheduler keeps a bounded log per topic.
        relay = _Relay(self._on_event)
        self.client.subscribe_topic(self._topic, relay)
        watchdog = self._watch_for_workers()

        def fill() -> None:
            while len(self._running) < self.n_workers and (
                budget is None or finished + len(self._running) < budget
            ):
                item = suggest()
                if item is None:
                    return
                trial_id, params, *rest = item
                self._submit(_InFlight(trial_id, params, time.time(), extra=dict(rest[0]) if rest else {}))

        try:
            with self._lock:
                fill()
            self._drain()
            for future, result in self._queue:
                with self._lock:
                    job = self._running.pop(future)
                    self._by_key.pop(future.key, None)
                    self._starts.pop(future.key, None)
                    outcome = self._outcome(future, result, job)
                    if outcome is not None:  # else resubmitted
                        self._by_trial.pop(job.trial_id, None)
                        self._late_reports(job, outcome)
                        record(outcome)
                        if outcome["status"] in ("completed", "pruned"):
                            finished += 1
                        else:
                            broken += 1
                            if broken > self.max_broken:
                                raise TooManyBrokenTrials(
                                    f"{broken} trials broke (max_broken={self.max_broken}); last one, "
                                    f"trial {outcome['trial']} ({outcome['status']}): {_last_line(outcome['error'])}"
                                )
                        fill()
                self._drain()
            return finished
        finally:
            # distributed keeps the client-side handler after unsubscribing: detach it so
            # that it holds nothing of this run.
            relay.target = None
            try:
                self.client.unsubscribe_topic(self._topic)
            except Exception:  # the client may be closing already
                logger.debug("could not unsubscribe from %s", self._topic, exc_info=True)
            watchdog.set()
            for future in self._running:
                future.cancel()
            self._queue.clear()
            # Hold no future after the run, so an adaptive cluster can shrink to its minimum.
            self._running, self._by_trial, self._by_key, self._starts = {}, {}, {}, {}

    # -- events from the workers: trial starts and intermediate reports -----------------
    def _on_event(self, event: tuple[float, dict]) -> None:
        # On the client's event loop thread.
        msg = event[1]
        if "step" not in msg:
            self._started(msg["key"])
            return
        # Queue, then handle unless the loop thread is busy (whoever holds the lock drains
        # the queue when it lets go).
        self._inbox.put(msg)
        self._drain()

    def _drain(self) -> None:
        while not self._inbox.empty():
            if not self._lock.acquire(blocking=False):
                return
            try:
                while True:
                    try:
                        msg = self._inbox.get_nowait()
                    except queue.Empty:
                        break
                    self._report(msg)
            finally:
                self._lock.release()

    def _report(self, msg: dict) -> None:
        if self._on_report is None:
            return  # report() values still reach the record, with the trial's result
        job = self._by_trial.get(msg["trial"])
        if job is None or job.key != msg["key"] or msg["step"] in job.seen:
            return  # a trial already recorded, a lost attempt, or a repeated step
        job.seen.add(msg["step"])
        try:
            decision = self._on_report({"trial": job.trial_id, "params": job.params, "step": msg["step"], "values": msg["values"]})
        except Exception:
            logger.exception("handling a report of trial %d failed", job.trial_id)
            return
        if decision == "prune" and not job.stopping:
            job.stopping = True
            logger.debug("pruning trial %d at step %g", job.trial_id, msg["step"])
            self.client.loop.add_callback(self._send_stop, job.key, msg["worker"])

    async def _send_stop(self, key: str, worker: str) -> None:
        try:
            await self.client.run(_stop_trial, key, workers=[worker], on_error="ignore", asynchronous=True)
        except Exception as exc:  # the worker left: its trial is lost anyway
            logger.debug("could not stop task %s on %s: %s", key, worker, exc)

    def _late_reports(self, job: _InFlight, outcome: dict) -> None:
        reports = outcome.pop("reports", None) or []
        if reports:
            outcome["last_step"] = reports[-1][0]
        elif job.seen:
            outcome["last_step"] = max(job.seen)
        if self._on_report is None:
            return
        for step, values in sorted(reports, key=lambda r: r[0]):
            if step not in job.seen:
                job.seen.add(step)
                self._on_report({"trial": job.trial_id, "params": job.params, "step": step, "values": values})

    def _submit(self, job: _InFlight) -> None:
        job.key = f"daskhpo-trial-{job.trial_id}-{uuid.uuid4().hex}"
        context = {"trial": job.trial_id, "key": job.key, "topic": self._topic, "checkpoint": job.extra.get("state")}
        future = self.client.submit(
            run_trial,
            self.fn,
            job.params,
            self.fn_kwargs,
            self.trial_timeout,
            context,
            key=job.key,
            pure=False,
            resources=self.resources,
        )
        self._by_key[future.key] = (future, job)
        self._running[future] = job
        self._by_trial[job.trial_id] = job
        self._queue.add(future)

    def _started(self, key: str) -> None:
        """A trial's task started on a worker (called on the client's event loop).

        A second start of the same task means its worker left mid-trial and the scheduler
        runs it again: that is one more attempt, bounded by ``retries`` like the
        resubmissions of :meth:`_outcome`.
        """
        self._starts[key] = self._starts.get(key, 0) + 1
        entry = self._by_key.get(key)
        if entry is None or self._starts[key] == 1:
            return
        future, job = entry
        job.attempts += 1
        if job.attempts > self.retries + 1:
            logger.warning(
                "trial %d: its worker left again, giving up after %d attempts (retries=%d)",
                job.trial_id, job.attempts - 1, self.retries,
            )
            job.attempts -= 1
            job.exhausted = True
            # Not future.cancel() here: that would block this very event loop.
            threading.Thread(target=future.cancel, daemon=True).start()
        else:
            logger.warning(
                "trial %d: its worker left mid-trial; the scheduler runs it again (attempt %d)",
                job.trial_id, job.attempts,
            )

    def _outcome(self, future: Future, result: Any, job: _InFlight) -> dict | None:
        base = {
            "trial": job.trial_id,
            "params": job.params,
            "submitted": job.submitted,
            "attempts": job.attempts,
            "parent": job.extra.get("parent"),
            "checkpoint": job.extra.get("checkpoint"),
            "last_step": math.nan,
        }
        if future.status == "finished":
            result = dict(result)
            result["state"] = result.pop("checkpoint", None)
            return {**base, **result}
        if job.exhausted:
            return self._failed(
                base, "lost", f"its worker left mid-trial in each of {job.attempts} attempts (retries={self.retries})"
            )
        if self._no_workers.is_set():
            raise NoWorkersError(
                f"no Dask worker connected within {self.worker_timeout:.0f} s while "
                f"{len(self._running) + 1} trials waited; check that the cluster's jobs start and "
                "stay up (e.g. squeue and the jobs' logs), or raise worker_timeout for a busy queue"
            )
        # The task failed outside the objective (its worker died, or the cluster lost it).
        error = result if isinstance(result, BaseException) else result[1]
        if isinstance(error, FutureCancelledError) and getattr(error, "reason", None) is None:
            text = "trial was cancelled outside daskhpo"
        else:
            text = f"{type(error).__name__}: {error}"
        if job.attempts <= self.retries:
            logger.warning("trial %d lost (%s): resubmitting (attempt %d)", job.trial_id, text, job.attempts + 1)
            self._submit(
                _InFlight(job.trial_id, job.params, job.submitted, job.attempts + 1, extra=job.extra, seen=job.seen)
            )
            return None
        return self._failed(base, "lost", f"{text} (after {job.attempts} attempts)")

    @staticmethod
    def _failed(base: dict, status: str, error: str) -> dict:
        return {
            **base,
            "status": status,
            "objective": math.nan,
            "metrics": {},
            "started": None,
            "ended": time.time(),
            "worker": None,
            "gpu": None,
            "error": error,
            "state": None,
        }
