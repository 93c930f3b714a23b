"""The asynchronous loop on the Dask client.

The engine keeps ``n_workers`` trials in flight with ``client.submit(..., pure=False)``
and reacts to each future as it completes (:class:`distributed.as_completed`): record the
outcome, let the caller tell the optimizer, submit the next trial.  It knows futures,
resources, retries and time-outs, and nothing about any particular algorithm: trials come
from a ``suggest`` callable and outcomes go to a ``record`` callable.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from distributed import Client, Future, as_completed
from distributed.client import FutureCancelledError

from .results import InvalidResult, parse_result

__all__ = ["Engine", "TooManyBrokenTrials", "NoWorkersError", "TrialTimeout", "run_trial"]

logger = logging.getLogger(__name__)


class TooManyBrokenTrials(RuntimeError):
    """More trials broke (raised, returned garbage, timed out, were lost) than allowed."""


class NoWorkersError(RuntimeError):
    """No Dask worker became available in time."""


def _current_worker() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().address
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
) -> dict:
    """Run one trial on a worker and describe its outcome as plain data.

    Exceptions and invalid results are caught here, on the worker, so that they reach the
    client as data (with the traceback as text) rather than as remote exceptions that may
    not even unpickle on the client.  ``timeout`` counts from the trial's start on the
    worker, not from its submission, so queueing never counts against a trial.
    """
    outcome: dict[str, Any] = {
        "worker": _current_worker(),
        "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "started": time.time(),
        "objective": math.nan,
        "metrics": {},
        "error": None,
    }
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
    except InvalidResult as exc:
        outcome["status"], outcome["error"] = "broken", f"InvalidResult: {exc}"
    except Exception:
        outcome["status"], outcome["error"] = "broken", traceback.format_exc(limit=-20)
    outcome["ended"] = time.time()
    return outcome


def _last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else ""


@dataclass
class _InFlight:
    trial_id: int
    params: dict[str, Any]
    submitted: float
    attempts: int = 1


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
        Resubmissions of a trial whose worker died (or that was lost with its worker).
    trial_timeout : float, optional
        Seconds, from its start on the worker, after which a trial is interrupted and
        recorded as ``timeout``.
    max_broken : int
        The run stops with :class:`TooManyBrokenTrials` once more trials than this broke.
    fn_kwargs : dict, optional
        Fixed keyword arguments of every call.
    worker_timeout : float
        Seconds to wait for a first worker before :class:`NoWorkersError`.
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

    def _watch_for_workers(self) -> threading.Timer | None:
        """Fail the run if no worker ever arrives (e.g. Slurm jobs that never start)."""
        if self.client.scheduler_info(n_workers=-1)["workers"]:
            return None
        logger.info(
            "No Dask worker connected yet: %d trials queued, waiting up to %.0f s",
            self.n_workers,
            self.worker_timeout,
        )

        def check() -> None:
            if not self.client.nthreads():
                self._no_workers.set()
                for future in list(self._running):
                    future.cancel()

        timer = threading.Timer(self.worker_timeout, check)
        timer.daemon = True
        timer.start()
        return timer

    # -- the loop ----------------------------------------------------------------------
    def run(
        self,
        suggest: Callable[[], tuple[int, dict[str, Any]] | None],
        record: Callable[[dict], None],
        budget: int | None = None,
    ) -> int:
        """Run trials until ``budget`` trials completed or ``suggest`` has nothing more.

        Parameters
        ----------
        suggest : callable
            Returns ``(trial_id, params)`` for the next trial, or ``None``.
        record : callable
            Receives each finished trial's record (a dict with ``trial``, ``params``,
            ``status``, ``objective``, ``metrics``, times, ``worker``, ``gpu``,
            ``attempts``, ``error``); called before the next trial is suggested.
        budget : int, optional
            Completed trials after which no more are submitted.

        Returns
        -------
        int
            The number of trials that completed.
        """
        self._running: dict[Future, _InFlight] = {}
        self._queue = as_completed(loop=self.client.loop, with_results=True, raise_errors=False)
        completed = broken = 0
        watchdog = self._watch_for_workers()

        def fill() -> None:
            while len(self._running) < self.n_workers and (
                budget is None or completed + len(self._running) < budget
            ):
                item = suggest()
                if item is None:
                    return
                trial_id, params = item
                self._submit(_InFlight(trial_id, params, time.time()))

        try:
            fill()
            for future, result in self._queue:
                job = self._running.pop(future)
                outcome = self._outcome(future, result, job)
                if outcome is None:
                    continue  # resubmitted
                record(outcome)
                if outcome["status"] == "completed":
                    completed += 1
                else:
                    broken += 1
                    if broken > self.max_broken:
                        raise TooManyBrokenTrials(
                            f"{broken} trials broke (max_broken={self.max_broken}); last one, "
                            f"trial {outcome['trial']} ({outcome['status']}): {_last_line(outcome['error'])}"
                        )
                fill()
            return completed
        finally:
            if watchdog is not None:
                watchdog.cancel()
            for future in self._running:
                future.cancel()
            self._queue.clear()
            self._running = {}

    def _submit(self, job: _InFlight) -> None:
        future = self.client.submit(
            run_trial,
            self.fn,
            job.params,
            self.fn_kwargs,
            self.trial_timeout,
            key=f"daskhpo-trial-{job.trial_id}-{uuid.uuid4().hex}",
            pure=False,
            resources=self.resources,
        )
        self._running[future] = job
        self._queue.add(future)

    def _outcome(self, future: Future, result: Any, job: _InFlight) -> dict | None:
        base = {"trial": job.trial_id, "params": job.params, "submitted": job.submitted, "attempts": job.attempts}
        if future.status == "finished":
            return {**base, **result}
        if self._no_workers.is_set():
            raise NoWorkersError(
                f"no Dask worker connected within {self.worker_timeout:.0f} s while "
                f"{len(self._running) + 1} trials waited; check that the cluster's jobs start"
            )
        # The task failed outside the objective (its worker died, or the cluster lost it).
        error = result if isinstance(result, BaseException) else result[1]
        if isinstance(error, FutureCancelledError) and getattr(error, "reason", None) is None:
            text = "trial was cancelled outside daskhpo"
        else:
            text = f"{type(error).__name__}: {error}"
        if job.attempts <= self.retries:
            logger.warning("trial %d lost (%s): resubmitting (attempt %d)", job.trial_id, text, job.attempts + 1)
            self._submit(_InFlight(job.trial_id, job.params, job.submitted, job.attempts + 1))
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
        }
