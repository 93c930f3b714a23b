"""The MLflow callback (served as ``daskhpo.callbacks.MLflow``): each trial as an MLflow run.

One *parent* run per daskhpo experiment, named after it, and one *nested* run per finished
trial: its parameters as MLflow params, its final objective and metrics and its
intermediate reports (``step=``) as MLflow metrics, its outcome as the run's status and its
daskhpo bookkeeping as tags.  A search that resumes (its experiment has trials already) logs
into the same parent: the parent is tagged with the experiment's name and storage
(``daskhpo.experiment``, ``daskhpo.storage``, and ``daskhpo.parent_key``, a digest of both
that is safe in MLflow's filter strings) and found by them; a new experiment, even one of the
same name and file, gets a parent of its own.

MLflow calls take milliseconds against a local database and up to minutes against a tracking
server that does not answer (MLflow retries), so they run on a thread of the callback's own:
the search's loop only queues each trial.  ``close()`` (called when ``workon`` returns)
waits for the queue as long as MLflow makes progress (see ``timeout``).  An MLflow failure
never stops the search: the first is logged as a warning, later ones at debug level, and
after three failures in a row the callback stops logging (each would wait for MLflow's
retries); ``close()`` says how many trials were not logged.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import posixpath
import queue
import re
import threading
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["MLflow"]

logger = logging.getLogger(__name__)

#: daskhpo status -> MLflow run status.  A pruned trial was stopped on purpose, before its
#: end: KILLED (the ``daskhpo.status`` tag keeps the exact status).
RUN_STATUS = {"completed": "FINISHED", "pruned": "KILLED", "broken": "FAILED", "timeout": "FAILED", "lost": "FAILED"}
#: MLflow's limits (mlflow.utils.validation): longer values are cut here, so that MLflow
#: neither refuses them nor warns once per trial
MAX_KEY, MAX_PARAM, MAX_TAG = 250, 6000, 8000
#: failures in a row after which the callback stops calling MLflow
GIVE_UP_AFTER = 3
_STOP = object()


def _require_mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise ImportError(
            "daskhpo.callbacks.MLflow needs MLflow: pip install mlflow (or pip install mlflow-skinny "
            "sqlalchemy alembic for a local sqlite:/// store without the server)"
        ) from None
    return mlflow


def mlflow_key(name: Any) -> str:
    """``name`` as an MLflow param, metric or tag key (MLflow refuses other characters).

    Characters other than letters, digits, ``_ - . / `` and space become ``_`` (the
    portable set: colons are refused on Windows); a key that would resolve to another path
    (``a/../b``, ``/x``, ``..``) has its slashes replaced, and a leading ``_`` if need be.
    """
    key = re.sub(r"[^/\w.\- ]", "_", str(name))[:MAX_KEY]
    if not _unique_path(key):
        key = key.replace("/", "_")
    if not _unique_path(key):
        key = "_" + key
    return key[:MAX_KEY]


def _unique_path(key: str) -> bool:
    # MLflow's rule (mlflow.utils.validation.path_not_unique): keys may be file names
    normal = posixpath.normpath(key)
    return bool(key) and normal == key and normal != "." and not normal.startswith(("..", "/"))


def _param(value: Any) -> str | None:
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None  # an inactive conditional dimension: no param, as MLflow users expect
    return str(value)[:MAX_PARAM]


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _ms(seconds: Any) -> int | None:
    return None if seconds is None else int(float(seconds) * 1000)


class MLflow:
    """Log each finished trial to MLflow, nested under one run per experiment.

    The parent run is named after the experiment and tagged ``daskhpo.experiment``,
    ``daskhpo.storage``, ``daskhpo.space`` and ``daskhpo.algorithm``; it is RUNNING during
    ``workon`` and FINISHED after.  Each trial is a child run ``trial <id>``:

    * params: the trial's configuration (values as strings, cut at MLflow's 6000
      characters; an inactive conditional dimension has no param);
    * metrics: ``objective`` (or one per objective of a multi-objective experiment), the
      objective's other metrics and ``constraint_<i>``, at the last reported step, and
      every intermediate report (:func:`daskhpo.report`) at its step (rounded down:
      MLflow's steps are integers), so that the metric's history is the learning curve and
      its latest value the final one;
    * status: FINISHED (completed), KILLED (pruned), FAILED (broken, timed out, lost);
    * tags: ``daskhpo.trial``, ``daskhpo.status``, ``daskhpo.worker``, ``daskhpo.attempts``
      and, when there is one, ``daskhpo.error``.

    Keys with characters MLflow refuses have them replaced by ``_`` (see :func:`mlflow_key`).

    Parameters
    ----------
    tracking_uri : str, optional
        Where to log, e.g. ``"sqlite:///mlflow.db"`` or ``"http://mlflow:5000"``.  ``None``:
        MLflow's own default (``MLFLOW_TRACKING_URI``, else, since MLflow 3, the database
        ``mlflow.db`` in the working directory; MLflow 3 refuses the old ``./mlruns`` file
        store unless ``MLFLOW_ALLOW_FILE_STORE=true``).
    experiment_name : str, optional
        The MLflow experiment (created if needed).  ``None``: the daskhpo experiment's name.
    timeout : float, default 30
        How long ``close()`` (the end of ``workon``) waits for MLflow without any trial being
        logged before it gives up on those still queued.  MLflow retries a tracking server
        that does not answer for minutes (about four with its defaults,
        ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` and ``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR``).

    Examples
    --------
    >>> from daskhpo.callbacks import MLflow
    >>> experiment.workon(train, max_trials=50,
    ...                   callbacks=[MLflow("sqlite:///mlflow.db")])  # doctest: +SKIP
    """

    def __init__(self, tracking_uri: str | None = None, experiment_name: str | None = None, *,
                 timeout: float = 30.0) -> None:
        _require_mlflow()
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if tracking_uri is not None and not isinstance(tracking_uri, str):
            raise TypeError(f"tracking_uri must be a string such as 'sqlite:///mlflow.db' or None, got {tracking_uri!r}")
        if experiment_name is not None and (not isinstance(experiment_name, str) or not experiment_name):
            raise ValueError(f"experiment_name must be a non-empty string or None, got {experiment_name!r}")
        self.tracking_uri, self.experiment_name, self.timeout = tracking_uri, experiment_name, float(timeout)
        self._session: _Session | None = None  # the run of workon being logged (or the last one)

    def __repr__(self) -> str:
        return f"MLflow(tracking_uri={self.tracking_uri!r}, experiment_name={self.experiment_name!r})"

    @property
    def parent_run_id(self) -> str | None:
        """The parent run of the last search set up (``None`` before, or when MLflow failed)."""
        return None if self._session is None else self._session.parent_run_id

    @property
    def failed(self) -> int:
        """How many trials of the last search were not logged."""
        return 0 if self._session is None else self._session.failed

    # -- the callback protocol (run on the search's loop: only queues) ----------------------
    def setup(self, experiment: Any) -> None:
        """Start logging ``experiment`` (``workon`` calls it before the first trial)."""
        if self._session is None or self._session.closed:
            # a session per run of workon: one that close() gave up on keeps its own state
            self._session = _Session(self.tracking_uri, self.experiment_name)
        attrs, storage = experiment.attrs, experiment.storage
        self._session.put("parent", {
            "name": str(experiment.name), "storage": "" if storage is None else os.path.abspath(storage),
            "resuming": bool(experiment.records()), "objectives": list(experiment.objectives),
            "space": str(attrs.get("space", "")), "algorithm": str(attrs.get("algorithm", "")),
        })

    def __call__(self, record: Mapping[str, Any]) -> None:
        """Queue one finished trial (see :mod:`daskhpo.integrations.callbacks` for the record)."""
        if self._session is None or self._session.closed:
            raise RuntimeError("the MLflow callback was not set up: pass it to workon(callbacks=[...]), "
                               "or call its setup(experiment) first")
        self._session.put("trial", dict(record))

    def close(self) -> None:
        """Log what is queued, mark the parent run FINISHED and stop the thread.

        Waits as long as MLflow keeps logging trials; after ``timeout`` seconds in which none
        was logged, the trials still queued are given up (the thread is left to end with
        the process).
        """
        if self._session is not None and not self._session.closed:
            self._session.close(self.timeout)


class _Session:
    """One run of ``workon`` logged to MLflow: a queue, the thread that empties it, its counts."""

    def __init__(self, tracking_uri: str | None, experiment_name: str | None) -> None:
        self.tracking_uri, self.experiment_name = tracking_uri, experiment_name
        self.parent_run_id: str | None = None
        self.failed = 0  # trials not logged
        self.closed = False
        self.trials = self.handled = 0  # trials queued, and handled by the thread
        #: guards the counts: after close() gave up (and counted what was left), the thread's
        #: late answers count nothing more (a trial counted twice as not logged)
        self.counting = threading.Lock()
        self.given_up = False
        self.done = 0  # items the thread handled: close() waits while this moves
        self.queue: queue.Queue = queue.Queue()
        self.client: Any = None
        self.experiment_id: str | None = None
        self.objectives: list[str] = []
        self.in_a_row = 0
        self.warned = False
        self.thread = threading.Thread(target=self.work, name="daskhpo-mlflow", daemon=True)
        self.thread.start()

    def put(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "trial":
            self.trials += 1
        self.queue.put((kind, data))

    def close(self, timeout: float) -> None:
        self.closed = True
        self.queue.put((_STOP, None))
        while True:
            done = self.done
            self.thread.join(timeout)
            if not self.thread.is_alive():
                break
            if self.done == done:
                with self.counting:
                    left = self.trials - self.handled
                    self.failed += left
                    self.given_up = True
                logger.warning("MLflow: no answer from %s for %g s; %d queued trial(s) not logged",
                               self.where(), timeout, left)
                return
        if self.failed:
            logger.warning("MLflow: %d trial(s) were not logged to %s (see the warning above)",
                           self.failed, self.where())

    def where(self) -> str:
        return self.tracking_uri or "MLflow's default tracking URI"

    # -- the thread -------------------------------------------------------------------------
    def work(self) -> None:
        while True:
            kind, data = self.queue.get()
            if kind is _STOP:
                self.attempt("finishing the parent run", self.finish_parent)
                return
            if kind == "parent":
                self.attempt("starting the parent run", self.start_parent, data)
            else:
                logged = self.attempt(f"logging trial {data.get('trial')}", self.log_trial, data)
                with self.counting:
                    if not self.given_up:
                        self.failed += not logged
                        self.handled += 1
            self.done += 1

    def attempt(self, what: str, fn: Any, *args: Any) -> bool:
        if self.in_a_row >= GIVE_UP_AFTER:
            return False
        try:
            fn(*args)
        except Exception as error:  # MLflow's errors are many (REST, SQL, validation): none stops the search
            self.in_a_row += 1
            if not self.warned:
                logger.warning("MLflow: %s failed (%s: %s); the search goes on, further MLflow errors "
                               "are logged at debug level", what, type(error).__name__, error)
                self.warned = True
            else:
                logger.debug("MLflow: %s failed", what, exc_info=True)
            if self.in_a_row == GIVE_UP_AFTER:
                logger.warning("MLflow: %d failures in a row, no more trials are logged to MLflow", GIVE_UP_AFTER)
            return False
        self.in_a_row = 0
        return True

    def connect(self, experiment_name: str) -> None:
        from mlflow import MlflowClient

        if self.client is None:
            self.client = MlflowClient(tracking_uri=self.tracking_uri)
        found = self.client.get_experiment_by_name(experiment_name)
        if found is None:
            try:
                self.experiment_id = self.client.create_experiment(experiment_name)
            except Exception:  # created meanwhile by another process
                found = self.client.get_experiment_by_name(experiment_name)
                if found is None:
                    raise
        if found is not None:
            self.experiment_id = found.experiment_id

    def start_parent(self, info: dict[str, Any]) -> None:
        self.parent_run_id = None
        self.objectives = info["objectives"]
        self.connect(self.experiment_name or info["name"])
        # the tag values may hold any character; their digest is safe in a filter string
        key = hashlib.sha1(f"{info['name']}\0{info['storage']}".encode()).hexdigest()
        if info["resuming"]:  # a fresh experiment of the same name and file gets a parent of its own
            runs = self.client.search_runs(
                [self.experiment_id], filter_string=f"tags.`daskhpo.parent_key` = '{key}'",
                max_results=1, order_by=["attributes.start_time DESC"])
            if runs:
                self.parent_run_id = runs[0].info.run_id
                self.client.update_run(self.parent_run_id, status="RUNNING")
                return
        tags = {"daskhpo.experiment": info["name"], "daskhpo.storage": info["storage"], "daskhpo.parent_key": key,
                "daskhpo.space": info["space"], "daskhpo.algorithm": info["algorithm"]}
        run = self.client.create_run(self.experiment_id, run_name=info["name"],
                                      tags={k: v[:MAX_TAG] for k, v in tags.items()})
        self.parent_run_id = run.info.run_id

    def finish_parent(self) -> None:
        if self.parent_run_id is not None:
            self.client.set_terminated(self.parent_run_id, "FINISHED")

    def log_trial(self, record: dict[str, Any]) -> None:
        from mlflow.entities import Metric, Param

        if self.parent_run_id is None:
            raise RuntimeError("no parent run (starting it failed)")
        trial, status = int(record["trial"]), str(record.get("status"))
        now = time.time()
        started = record.get("started") or record.get("submitted") or record.get("ended") or now
        ended = record.get("ended") or now
        tags = {"mlflow.parentRunId": self.parent_run_id, "daskhpo.trial": str(trial), "daskhpo.status": status,
                "daskhpo.worker": str(record.get("worker") or ""), "daskhpo.attempts": str(record.get("attempts", 1))}
        if record.get("error"):
            tags["daskhpo.error"] = str(record["error"])[-MAX_TAG:]  # the end of a traceback says most
        run = self.client.create_run(self.experiment_id, start_time=_ms(started), tags=tags,
                                      run_name=f"trial {trial}")
        params = [Param(mlflow_key(k), p) for k, v in dict(record.get("params") or {}).items()
                  if (p := _param(v)) is not None]
        metrics: list[Metric] = []
        reports = list(record.get("reports") or [])
        for step, values in reports:
            for name, value in dict(values).items():
                try:  # MLflow keeps NaN and infinities: a diverging curve is shown as it was
                    metrics.append(Metric(mlflow_key(name), float(value), _ms(ended), _step(step)))
                except (TypeError, ValueError):
                    continue
        last = max((_step(step) for step, _ in reports), default=0)
        final = dict(record.get("metrics") or {})
        values = list(record.get("values") or [])
        if values and len(values) == len(self.objectives):
            final.update(zip(self.objectives, values))
        else:
            final["objective"] = record.get("objective")
        final.update({f"constraint_{i}": c for i, c in enumerate(record.get("constraints") or [])})
        # the final values at the last step, and stamped last: they are each metric's latest value
        stamp = _ms(ended) + 1
        metrics += [Metric(mlflow_key(k), v, stamp, last) for k, value in final.items()
                    if (v := _finite(value)) is not None]
        try:
            self.client.log_batch(run.info.run_id, metrics=metrics, params=params)  # split at MLflow's limits
        except Exception:
            self.client.set_terminated(run.info.run_id, "FAILED", end_time=_ms(ended))  # not left RUNNING
            raise
        self.client.set_terminated(run.info.run_id, RUN_STATUS.get(status, "FAILED"), end_time=_ms(ended))


def _step(step: Any) -> int:
    # MLflow's steps are integers; fractional resources are rounded down.
    return int(math.floor(float(step)))
