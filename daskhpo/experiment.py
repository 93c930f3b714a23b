"""Experiments: a space, an optimizer and a history, run on Dask by :meth:`Experiment.workon`."""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import json
import logging
import math
import os
import statistics
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import xarray as xr

from . import sessions
from ._version import __version__
from .checkpoints import CheckpointStore
from .engine import DaskExecutor, Engine, Executor, Planned, Suggester
from .engine.drain import drain_requested
from .engine.packed import PackedDaskExecutor
from .history import History, read_history
from .objectives import ObjectiveVector, check_objectives, objectives_from_attrs, signs, variable
from .optimizers import CONTINUE, Optimizer, Report, Trial, available, make_optimizer, optimizer_class
from .pareto import non_dominated
from .records import ReportRecord, TrialRecord, TrialStarted, direction_sign
from .results import CONSTRAINT, RESERVED, split_constraints
from .space import Dimension, Space
from .storage_lock import StorageLock

__all__ = ["Experiment", "build_experiment", "create_experiment", "load_experiment"]

logger = logging.getLogger(__name__)
#: best completed configurations that fills (workon's fill_idle) start from
_INCUMBENTS = 5


#: the values of ``direction``
DIRECTIONS = ("minimize", "maximize")
#: the id of the first trial of a ``warm_start`` as the optimizer is told it (the k-th
#: completed trial of the other experiment is ``WARM_START_ID + k``): far above any id of
#: this experiment, so that no optimizer mistakes one for a trial of its own
WARM_START_ID = 2**40


def check_direction(direction: Any) -> str:
    """``direction`` once checked.

    Raises
    ------
    ValueError
        Naming ``direction``, for anything but ``"minimize"`` or ``"maximize"``.
    """
    if not isinstance(direction, str) or direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
    return direction


def as_trial(record: TrialRecord, sign: float = 1.0, value_signs: Sequence[float] = ()) -> Trial:
    """A finished trial's record as the optimizers see it.

    ``sign`` is -1 for a maximized experiment: optimizers always minimize, so they are told
    the negated objective (the history keeps the user's own value).  ``value_signs`` does
    the same for each of several objectives (:attr:`Trial.values`).
    """
    metrics = dict(record.metrics)
    if record.constraints:
        metrics.update({f"{CONSTRAINT}{i}": c for i, c in enumerate(record.constraints)})
        metrics["feasible"] = float(record.feasible)
    return Trial(
        record.trial,
        dict(record.params),
        record.status,
        sign * record.objective,
        metrics,
        parent=record.parent,
        checkpoint=record.checkpoint_from,
        last_step=record.last_step,
        values=tuple(s * v for s, v in zip(value_signs or [1.0] * len(record.values), record.values)),
    )


def as_report(report: ReportRecord, params: Mapping[str, Any], sign: float = 1.0) -> Report:
    """A report as the optimizers see it (its objective times ``sign``, see :func:`as_trial`)."""
    return Report(report.trial, dict(params), report.step, sign * report.objective, report.metrics)


class _Teller:
    """What the optimizer is told: the experiment's boundary between the user's values and
    the minimized ones.

    * Objectives (and reported ones) are multiplied by the direction's sign.
    * A completed trial that is infeasible (a constraint ``> 0``) is told as completed with a
      penalized objective: the worst (signed) objective of every completed trial told so far,
      this one included, plus the sum of its constraint violations.  So every algorithm
      ranks it below every trial told before it, without knowing of constraints; its
      metrics carry ``constraint_<i>`` and ``feasible`` (0.0).  An algorithm that models
      constraints itself (:attr:`Optimizer.handles_constraints`, e.g. tpe and gp) is told the
      trial's own objective instead, and reads the constraints from :attr:`Trial.constraints`.
      Deterministic in the order of events, so resume (which tells the same events in the
      same order) rebuilds the same values.
    * With several objectives, each value is signed by its own direction
      (:attr:`Trial.values`), and an infeasible trial is penalized in each objective the
      same way, against that objective's worst value so far.
    """

    def __init__(self, direction: str, handles_constraints: bool = False,
                 objectives: Mapping[str, str] | None = None) -> None:
        self.sign = direction_sign(direction)
        self.worst = -math.inf
        self.penalize = not handles_constraints
        self.signs = signs(objectives or {})
        self.worst_values = [-math.inf] * len(self.signs)

    def trial(self, record: TrialRecord) -> Trial:
        trial = as_trial(record, self.sign, self.signs)
        if trial.values:
            if trial.ok:
                self.worst_values = [max(w, v) for w, v in zip(self.worst_values, trial.values)]
                if self.penalize and not record.feasible:
                    violation = sum(max(c, 0.0) for c in record.constraints)
                    trial = dataclasses.replace(trial, values=tuple(w + violation for w in self.worst_values))
            return trial
        if record.status == "completed" and math.isfinite(trial.objective):
            self.worst = max(self.worst, trial.objective)
            if self.penalize and not record.feasible:
                violation = sum(max(c, 0.0) for c in record.constraints)
                trial = dataclasses.replace(trial, objective=self.worst + violation)
        return trial

    def report(self, report: ReportRecord, params: Mapping[str, Any]) -> Report:
        return as_report(report, params, self.sign)


class Experiment:
    """A named search: its space, its optimizer and its history.

    Build one with :func:`build_experiment`; reopen a stored one for analysis with
    :func:`load_experiment`.  Other layers (plots, the dashboard, progress bars, loggers)
    read it through :meth:`records` and :meth:`subscribe`, both safe to call from any
    thread while :meth:`workon` runs.
    """

    def __init__(
        self,
        name: str,
        space: Space,
        optimizer: Optimizer | None,
        history: History,
        read_only: bool = False,
        checkpoints: CheckpointStore | None = None,
    ) -> None:
        self.name = name
        self.space = space
        self.optimizer = optimizer
        self._history = history
        self._checkpoints = checkpoints if checkpoints is not None else CheckpointStore(history.path)
        self.read_only = read_only
        self._client = None
        self._subscribers: list[Callable[[TrialRecord], None]] = []
        self._publish_lock = threading.Lock()
        #: guards trial ids and the enqueued configurations (the model thread and fills take them)
        self._ids_lock = threading.Lock()
        self._dashboard = None
        #: the storage's writer lock, while this object writes the storage
        self._lock: StorageLock | None = None
        self._superseded = False
        #: default ``max_trials`` of :meth:`workon` (set by :func:`create_experiment`)
        self.max_trials: int | None = None
        self._teller = self._new_teller()
        #: configurations to run next (see :meth:`enqueue`); the space's defaults first
        self._queue: list[dict[str, Any]] = []
        defaults = space.defaults()
        if optimizer is not None and defaults is not None and history.next_trial_id == 0:
            self._queue.append(defaults)

        #: the suggester (model thread) of the run under way, if it suggests in the background
        self._model: Suggester | None = None
        self._engine: Engine | None = None
        #: running trial id -> the trial whose checkpoint it starts from
        self._running_from: dict[int, int] = {}
        #: whether the run under way fills idle slots (fill_idle), and from what
        self._filling = False
        #: run times (s) of the last completed trials of this run
        self._run_times: deque[float] = deque(maxlen=64)
        #: (minimized objective, trial, params) of the best completed trials, best first
        self._incumbents: list[tuple[float, int, dict[str, Any]]] = []

    @property
    def direction(self) -> str:
        """``"minimize"`` or ``"maximize"`` (the history's attr ``direction``)."""
        return str(self._history.attrs.get("direction", "minimize"))

    @property
    def _sign(self) -> float:
        return direction_sign(self.direction)

    @property
    def objectives(self) -> dict[str, str]:
        """The objectives of a multi-objective experiment, name -> direction, in order.

        Empty for a single-objective experiment.  Stored in the history's attr
        ``objectives`` (JSON).
        """
        return objectives_from_attrs(self._history.attrs)

    @property
    def pareto_front(self) -> list[dict[str, Any]]:
        """The non-dominated completed (and feasible) trials of a multi-objective experiment.

        A trial is on the front when no other completed feasible trial is at least as good
        in every objective and better in one (each in its own direction).  Trials with
        equal values are all kept.

        Returns
        -------
        list of dict
            By trial id, each ``{"trial": id, "params": {...}, "values": {objective: value}}``
            with the values the objective returned.

        Raises
        ------
        ValueError
            For an experiment with one objective (use :attr:`best`).
        """
        objectives = self.objectives
        if not objectives:
            raise ValueError(f"experiment {self.name!r} has one objective: use experiment.best "
                             "(pareto_front is for experiments built with objectives=)")
        done = [r for r in self._history.records if r.ok and r.feasible and r.values]
        if not done:
            return []
        minimized = [[s * v for s, v in zip(signs(objectives), r.values)] for r in done]
        keep = non_dominated(minimized)
        return [{"trial": r.trial, "params": dict(r.params), "values": dict(zip(objectives, r.values))}
                for r, k in zip(done, keep) if k]

    def __repr__(self) -> str:
        return f"<Experiment {self.name!r}: {len(self._history)} trials, {self.optimizer!r}>"

    def _take_lock(self, lock: StorageLock) -> None:
        self._lock = lock
        _WRITERS[os.path.realpath(lock.path)] = self

    def _release_storage(self, superseded: bool = False) -> None:
        self._history.detach()
        self._lock = None
        self._superseded = superseded

    def close(self) -> None:
        """Write the history, stop writing to the storage and release its lock.

        The experiment stays readable.  Also called when leaving a ``with`` block.
        """
        lock = self._lock
        self._history.close()
        self._release_storage()
        if lock is not None:
            _WRITERS.pop(os.path.realpath(lock.path), None)
            lock.release()

    def __enter__(self) -> Experiment:
        return self

    def _new_teller(self) -> _Teller:
        return _Teller(self.direction, bool(getattr(self.optimizer, "handles_constraints", False)),
                       self.objectives)

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        # Pickled (e.g. inside a fitted SearchCV): the results travel, not the live wiring.
        state = dict(self.__dict__)
        state.update(_publish_lock=None, _ids_lock=None, _subscribers=[], _dashboard=None, _client=None,
                     _lock=None, _engine=None, _model=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._publish_lock = threading.Lock()
        self._ids_lock = threading.Lock()
        # pickled before these existed
        self.__dict__.setdefault("_queue", [])
        self.__dict__.setdefault("_filling", False)
        self.__dict__.setdefault("_run_times", deque(maxlen=64))
        self.__dict__.setdefault("_incumbents", [])
        self.__dict__.setdefault("_teller", self._new_teller())

    # -- results -----------------------------------------------------------------------
    @property
    def history(self) -> xr.Dataset:
        """Every trial so far, as an :class:`xarray.Dataset` (see :mod:`daskhpo.history`)."""
        return self._history.to_dataset()

    @property
    def attrs(self) -> dict[str, Any]:
        """The experiment's stored attributes (name, space, algorithm, seed, version)."""
        return dict(self._history.attrs)

    @property
    def quarantined(self) -> list[dict[str, Any]]:
        """Workers quarantined by this experiment's runs, oldest first.

        Each is a plain dict: ``worker`` (its address), ``host``, ``when`` (epoch
        seconds), ``why`` (the last error line of the trials that broke there) and
        ``trials`` (those run again elsewhere).  Stored in the history's attrs (JSON,
        ``quarantined``), so :func:`load_experiment` shows them too.
        """
        return json.loads(self._history.attrs.get("quarantined", "[]"))

    def _on_quarantine(self, entry: dict[str, Any]) -> None:
        self._history.attrs["quarantined"] = json.dumps([*self.quarantined, entry])
        logger.warning("%s: worker %s (host %s) quarantined: %s", self.name, entry["worker"], entry["host"], entry["why"])
        with contextlib.suppress(Exception):  # kept in memory at worst; written at the next snapshot
            self._history.snapshot()

    def _end_session(self, reason: str) -> None:
        """Record why this process's session stopped (``driver_sessions``; see :mod:`daskhpo.sessions`)."""
        if self._lock is not None:  # only the writer of a storage has a session
            self._history.attrs[sessions.ATTR] = sessions.end(self._history.attrs, reason)

    @property
    def storage(self) -> str | None:
        """Where the history is stored, or ``None`` for an in-memory experiment."""
        return self._history.path

    @property
    def client(self) -> Any:
        """The Dask client of :meth:`tmp_executor`, while its block runs, else ``None``."""
        return self._client

    def records(self) -> list[TrialRecord]:
        """Every finished trial so far, by trial id, as typed records."""
        return self._history.records

    def reports(self, trial_id: int) -> list[ReportRecord]:
        """The intermediate reports of a finished trial, by step."""
        return self._history.reports(trial_id)

    def subscribe(self, callback: Callable[[TrialRecord], None], *, replay: bool = False) -> Callable[[], None]:
        """Call ``callback`` with each trial that finishes from now on.

        The callback runs on the experiment's loop thread, after the trial is on disk and
        the optimizer was told of it; an exception it raises is logged, never stops the
        search.  Keep it quick (hand slow work to a thread of your own).

        Parameters
        ----------
        callback : callable
            Receives a :class:`~daskhpo.records.TrialRecord`.
        replay : bool, default False
            First call it with every trial already finished, in trial order; no trial is
            missed or given twice, even while trials arrive.

        Returns
        -------
        callable
            Call it to unsubscribe.
        """
        with self._publish_lock:
            if replay:
                for record in self._history.records:
                    self._call(callback, record)
            self._subscribers = [*self._subscribers, callback]

        def unsubscribe() -> None:
            with self._publish_lock:
                self._subscribers = [s for s in self._subscribers if s is not callback]

        return unsubscribe

    @property
    def subscribers(self) -> list[Callable[[TrialRecord], None]]:
        """The callbacks currently subscribed (see :meth:`subscribe`)."""
        return list(self._subscribers)

    @staticmethod
    def _call(callback: Callable[[TrialRecord], None], record: TrialRecord) -> None:
        try:
            callback(record)
        except Exception:
            logger.exception("subscriber %r failed", callback)

    @property
    def trials(self) -> list[Trial]:
        """Every trial so far, as the optimizers see them."""
        return [as_trial(r) for r in self._history.records]

    @property
    def best(self) -> dict[str, Any] | None:
        """The best feasible completed trial: ``{"params", "objective", "trial"}``, or ``None``.

        The lowest objective, or the highest for ``direction="maximize"``; ties go to the
        earliest trial.  Only feasible trials count (every constraint the objective
        returned ``<= 0``; a trial without constraints is feasible): ``None`` when no
        completed trial is.

        Raises
        ------
        ValueError
            For an experiment with several objectives, which has no single best trial:
            :attr:`pareto_front` lists the trials no other one beats in every objective.
        """
        if self.objectives:
            raise ValueError(
                f"experiment {self.name!r} has several objectives ({', '.join(self.objectives)}): no single trial "
                "is best; use experiment.pareto_front for the trials no other one beats in every objective"
            )
        done = [r for r in self._history.records if r.ok and r.feasible]
        if not done:
            return None
        sign = self._sign
        best = min(done, key=lambda r: (sign * r.objective, r.trial))
        return {"params": dict(best.params), "objective": best.objective, "trial": best.trial}

    @property
    def plot(self) -> Any:
        """Plots of this experiment: ``experiment.plot.regret()`` etc. (see :mod:`daskhpo.plot`)."""
        from .plot import PlotAccessor

        return PlotAccessor(self)

    def dashboard(self, port: int = 0, *, address: str = "localhost") -> Any:
        """Serve a live Bokeh dashboard of this experiment from this process.

        It shows the trials so far and streams each new one as it finishes, while
        :meth:`workon` runs.  Calling it again returns the running dashboard (or moves it,
        when given another port or address).

        Parameters
        ----------
        port : int, default 0
            0 picks a free port.
        address : str, default "localhost"
            The interface to listen on; the default keeps it private to this machine.

        Returns
        -------
        daskhpo.dashboard.Dashboard
            With ``.url`` and ``.stop()``.
        """
        from .dashboard import serve_experiment

        running = self._dashboard
        if running is not None and running.running:
            if port in (0, running.port) and address == running.address:
                return running
            running.stop()  # asked for another port or interface
        self._dashboard = serve_experiment(self, port=port, address=address)
        return self._dashboard

    # -- running -----------------------------------------------------------------------
    def enqueue(self, params: Mapping[str, Any]) -> None:
        """Run this configuration next, before the optimizer's own suggestions.

        Enqueued configurations run in the order given, each in the place of the next
        *new* configuration the optimizer suggests (a promotion or a continuation of a
        running lineage, as ASHA or PBT ask for, keeps its turn).  A partial configuration
        is completed with that suggestion's values of the parameters it leaves out.  The
        optimizer learns what ran when the trial is told, as for every trial.

        The space's defaults (when every dimension has one) are the first enqueued
        configuration of a new experiment.  The queue lives in this object, not in the
        storage: configurations not yet submitted when the process ends are not resumed
        (enqueue them again); those submitted are trials like any other.

        Parameters
        ----------
        params : dict
            Parameter name -> value; every value is checked against its prior.

        Raises
        ------
        ValueError
            Naming the parameter, for an unknown name or a value its prior cannot take.
        """
        if self.read_only:
            raise RuntimeError(f"experiment {self.name!r} was loaded read-only; use build_experiment to resume it")
        if not isinstance(params, Mapping):
            raise ValueError(f"enqueue takes a dict of parameter -> value, got {type(params).__name__}")
        unknown = [n for n in params if n not in self.space]
        if unknown:
            raise ValueError(f"enqueue: unknown parameter(s) {unknown}; the space has {list(self.space)}")
        self._queue.append({n: self.space[n].validate(v) for n, v in params.items()})

    @property
    def enqueued(self) -> list[dict[str, Any]]:
        """The configurations waiting to run (see :meth:`enqueue`), in order."""
        return [dict(p) for p in self._queue]

    def _suggest(self) -> Planned | None:
        (trial_id,) = self._reserve_ids(1)
        suggestion = self.optimizer.ask(trial_id)
        if suggestion is None:
            self._release_ids([trial_id])
            return None
        return self._plan(trial_id, suggestion)

    def _suggest_batch(self, k: int) -> list[Planned]:
        # On the suggester's model thread (background suggestions): one batch per request.
        ids = self._reserve_ids(k)
        suggestions = self.optimizer.ask_batch(ids)
        self._release_ids(ids[len(suggestions):])
        return [self._plan(i, s) for i, s in zip(ids, suggestions)]

    def _fill(self, k: int) -> list[Planned]:
        # On the loop's thread while the model thread may be inside the optimizer: fill()
        # touches only the space and the seed.
        incumbents = [params for _, _, params in self._incumbents]
        return [self._plan(i, self.optimizer.fill(i, incumbents)) for i in self._reserve_ids(k)]

    def _reserve_ids(self, k: int) -> list[int]:
        # Ids are taken before the optimizer is asked (they seed its draws), by the model
        # thread and by fills on the loop's thread: one counter, under a lock.
        with self._ids_lock:
            ids = list(range(self._next_id, self._next_id + k))
            self._next_id += k
            return ids

    def _release_ids(self, ids: list[int]) -> None:
        # A batch that suggested fewer trials gives its last ids back, unless a fill took
        # the ids after them meanwhile (the history then skips those trial ids).
        with self._ids_lock:
            if ids and self._next_id == ids[-1] + 1:
                self._next_id = ids[0]

    def _plan(self, trial_id: int, suggestion: Any) -> Planned:
        parent, checkpoint = suggestion.parent, suggestion.checkpoint
        params = dict(suggestion.params)
        queued = None
        if parent is None and checkpoint is None:
            with self._ids_lock:  # fills on the loop's thread take enqueued ones too
                queued = self._queue.pop(0) if self._queue else None
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
        if checkpoint is not None:
            self._running_from[trial_id] = checkpoint
        return Planned(trial_id, params, parent, checkpoint, self._checkpoints.get(checkpoint))

    def _on_start(self, plan: Planned, attempt: int) -> None:
        self._history.append_start(TrialStarted(plan.trial, plan.params, attempt, time.time()))

    def _on_report(self, report: ReportRecord, params: Mapping[str, Any]) -> str | None:
        # Journaled before the optimizer decides on it, like a finished trial.
        report = self._history.append_report(report)
        if self._model is not None:
            # decided after the tells posted before it, at once if the model is free, else by the
            # model thread before its next batch; the loop goes on receiving meanwhile
            self._model.post(self._decide, self._teller.report(report, params))
            return None
        return self.optimizer.report(self._teller.report(report, params))

    def _decide(self, report: Report) -> None:
        try:
            decision = self.optimizer.report(report)
        except Exception:
            logger.exception("handling a report of trial %d failed", report.trial_id)
            decision = CONTINUE  # answered all the same: the trial may wait on it (report(wait=...))
        engine = self._engine
        if engine is None:  # the run ended meanwhile
            return
        engine.decide_later(report.trial_id, decision)
        if self._model is not None and self._model.on_ready is not None:
            self._model.on_ready()  # wake the loop to apply it

    def _record(self, record: TrialRecord, checkpoint: Any) -> None:
        # On disk before the optimizer hears of it: nothing told is ever lost.
        finite = record.status in ("completed", "pruned") and math.isfinite(record.objective)
        # "best" keeps the lowest: the objective as the optimizer sees it (negated to maximize)
        self._checkpoints.put(record.trial, checkpoint, objective=self._sign * record.objective if finite else None)
        metrics, constraints = split_constraints(record.metrics)
        if constraints:  # parse_result sends them among the metrics
            record = record.replace(metrics=metrics, constraints=constraints)
        objectives = self.objectives
        if objectives and record.status == "completed":
            # ObjectiveVector sent every objective among the metrics, and a placeholder objective
            missing = [n for n in objectives if variable(n) not in record.metrics]
            if missing:  # an executor without an objective to wrap (no .fn): its results are checked here
                record = record.replace(status="broken", objective=math.nan,
                                        error=f"InvalidResult: objective(s) {missing} missing from the result")
            else:
                values = tuple(record.metrics[variable(n)] for n in objectives)
                rest = {k: v for k, v in record.metrics.items() if k not in set(map(variable, objectives))}
                record = record.replace(values=values, objective=math.nan, metrics=rest)
        with self._publish_lock:
            record = self._history.append(record)
            subscribers = self._subscribers
        told = self._teller.trial(record)
        self._running_from.pop(record.trial, None)
        if self._filling and record.status == "completed" and record.started and record.ended:
            # a typical trial's run time: how long a slot may wait for the model (fill_idle)
            self._run_times.append(record.ended - record.started)
            self._model.trial_seconds = statistics.median(self._run_times)
            self._keep_incumbent(record)
        if self._model is not None:  # told on the model thread, in this order, before its next batch
            self._model.post(self.optimizer.tell, told)
            self._model.post(self._retain_checkpoints)
        else:
            self.optimizer.tell(told)
            self._retain_checkpoints()
        for callback in subscribers:
            self._call(callback, record)

    def _keep_incumbent(self, record: TrialRecord) -> None:
        """Keep the best completed feasible configurations (what fills start from), best first."""
        if record.status == "completed" and record.feasible and math.isfinite(record.objective):
            entry = (self._sign * record.objective, record.trial, record.params)
            self._incumbents = heapq.nsmallest(_INCUMBENTS, [*self._incumbents, entry], key=lambda e: e[:2])

    def _retain_checkpoints(self) -> None:
        """Delete the checkpoints no one may start from again (``keep_checkpoints``)."""
        if self._checkpoints.keep == "all":
            return
        needed = self.optimizer.needed_checkpoints()
        if needed is None:
            return  # the optimizer cannot tell: keep everything
        self._checkpoints.retain(set(needed) | set(list(self._running_from.values())))

    def workon(
        self,
        fn: Callable[..., Any],
        max_trials: int | None = None,
        *,
        client: Any = None,
        n_workers: int | None = None,
        resources: Mapping[str, float] | None = None,
        retries: int = 1,
        trial_timeout: float | None = None,
        max_broken: int = 3,
        quarantine_after: int | None = 3,
        worker_timeout: float = 60.0,
        dashboard: bool | int = False,
        progress: bool | None = None,
        callbacks: Sequence[Callable[[dict], Any]] | None = None,
        trials_per_task: int = 1,
        fill_idle: float = 0.25,
        **fn_kwargs: Any,
    ) -> Experiment:
        """Run trials of ``fn`` on Dask until ``max_trials`` trials have completed.

        Parameters
        ----------
        fn : callable
            The objective, called as ``fn(**params, **fn_kwargs)`` on a worker.  It returns
            a number to minimize, a dict of metrics with the key ``"objective"``, or a list
            of ``{"name", "type", "value"}`` dicts with one entry of type ``"objective"``.
        max_trials : int, optional
            Finished (completed or pruned) trials in the whole experiment, stored ones
            included.  Default: the experiment's ``max_trials`` (see
            :func:`create_experiment`); without either the search runs until the
            optimizer is exhausted (or Ctrl-C).
        client : distributed.Client, optional
            Default: the client of :meth:`tmp_executor`, else the current Dask client, else
            a :class:`~distributed.LocalCluster` started and closed for this call.
        n_workers : int, optional
            Trials in flight.  Default: the connected workers' threads (those with the
            ``resources``), plus one in ten queued on the workers so that a freed thread
            starts its next trial without a round trip through the client.  Set it to your
            target size for adaptive clusters, which only grow while trials wait.
        resources : dict, optional
            Dask resource annotation of every trial, e.g. ``{"GPU": 1}``.
        retries : int, default 1
            Further attempts of a trial whose worker died or left mid-trial (e.g. its
            Slurm job was cancelled); each is counted in the history's ``attempts``.
        trial_timeout : float, optional
            Seconds after which a trial is recorded as ``timeout``.
        max_broken : int, default 3
            Stop with :class:`~daskhpo.TooManyBrokenTrials` once more trials broke in
            this call.  With quarantine on, the broken trials of a worker not yet judged
            are counted when it is judged (or when nothing else runs), so the run may
            stop a few trials later (at most ``quarantine_after + n_workers`` held).
        quarantine_after : int or None, default 3
            A worker on which this many distinct trials in a row broke (status
            ``broken``, not ``timeout``) while trials finish on other workers is
            quarantined: it is retired from the cluster and gets no further trial, the
            trials that broke there run again elsewhere (one more ``attempts`` each, not
            counted in ``max_broken``), and it is listed in :attr:`quarantined`.  A
            configuration that breaks on every node is still ``broken`` and counted.
            ``None`` turns it off.  On Slurm, see ``docs/slurm.md`` (a replacement job may
            land on the same node).
        worker_timeout : float, default 60
            Seconds without any connected worker (at the start, or after every worker
            left) before :class:`~daskhpo.NoWorkersError`.  Raise it when jobs wait long
            in a batch queue.
        dashboard : bool or int, default False
            Serve the live dashboard (:meth:`dashboard`; an int is its port) and log its
            URL.  It keeps serving after the run; ``experiment.dashboard().stop()`` ends it.
        progress : bool, optional
            A progress bar (tqdm; see :mod:`daskhpo.progress`).  ``None``: only when
            standard error is a terminal or in a notebook; ``True``: always; ``False``: never.
        callbacks : list of callables, optional
            Each receives every finished trial's record (a dict; see
            :func:`daskhpo.progress.attach`), e.g. :class:`daskhpo.callbacks.TensorBoard`.
        trials_per_task : int, default 1
            Trials run one after the other in each Dask task (opt-in, for trials of a few
            milliseconds, whose time Dask's per-task overhead dominates; see
            :mod:`daskhpo.engine.packed`).  The default ``n_workers`` is then the workers'
            threads times this.
        fill_idle : float, default 0.25
            Most share of the trials that may run a draw from the prior (or the next
            enqueued configuration) in a slot that would otherwise wait for a model-based
            algorithm (gp, tpe): only while the model's batch under way has taken longer
            than 2 % of a typical trial's run time, so trials of minutes never see it;
            trials of a second on a slow model do (see ``docs/algorithms.md``).  ``0``:
            slots wait for the model.
        **fn_kwargs
            Fixed keyword arguments passed to every call of ``fn``.

        Returns
        -------
        Experiment
            ``self``, for chaining.
        """
        clash = sorted(set(fn_kwargs) & set(self.space))
        if clash:
            raise ValueError(f"fixed keyword argument(s) {clash} are also parameters of the space")
        max_trials = self._check_writable(max_trials)
        if self._budget(max_trials) == 0:
            self._end_session("nothing to do")
            self._history.snapshot()
            return self
        with _client_for(client or self._client) as dask_client:
            # short trials: several per Dask task (daskhpo.engine.packed)
            packing = {} if trials_per_task == 1 else {"trials_per_task": trials_per_task}
            executor = (PackedDaskExecutor if packing else DaskExecutor)(
                dask_client, fn, fn_kwargs=fn_kwargs, resources=resources, trial_timeout=trial_timeout,
                worker_timeout=worker_timeout, **packing)
            if dashboard:
                from .dashboard import dask_link

                board = self.dashboard(0 if dashboard is True else int(dashboard))
                board.dask_link = dask_link(dask_client)
                logger.info("%s: live dashboard at %s", self.name, board.url)
            self.run(executor, max_trials, n_workers=n_workers, retries=retries, max_broken=max_broken,
                     quarantine_after=quarantine_after, progress=progress, callbacks=callbacks,
                     fill_idle=fill_idle)
        return self

    def _check_writable(self, max_trials: int | None) -> int | None:
        """``max_trials``, or the experiment's default, once checked."""
        if self.read_only:
            raise RuntimeError(f"experiment {self.name!r} was loaded read-only; use build_experiment to resume it")
        if self._superseded:
            raise RuntimeError(f"experiment {self.name!r}: its storage {self.storage!r} was opened again by a later "
                               "build_experiment in this process; use that experiment object")
        if max_trials is None:
            max_trials = self.max_trials
        if max_trials is not None and (not isinstance(max_trials, int) or max_trials < 0):
            raise ValueError(f"max_trials must be a non-negative integer, got {max_trials!r}")
        return max_trials

    def _budget(self, max_trials: int | None) -> int | None:
        return None if max_trials is None else max(max_trials - self._history.finished, 0)

    def run(
        self,
        executor: Executor,
        max_trials: int | None = None,
        *,
        n_workers: int | None = None,
        retries: int = 1,
        max_broken: int = 3,
        quarantine_after: int | None = 3,
        progress: bool | None = False,
        callbacks: Sequence[Callable[[dict], Any]] | None = None,
        fill_idle: float = 0.25,
    ) -> Experiment:
        """Run trials on any executor until ``max_trials`` trials have finished.

        :meth:`workon` is this with a :class:`~daskhpo.engine.DaskExecutor`; tests and
        simulations pass a :class:`~daskhpo.engine.FakeExecutor` (virtual time).

        Parameters
        ----------
        executor : daskhpo.engine.Executor
        max_trials, n_workers, retries, max_broken, quarantine_after, progress, callbacks, fill_idle
            As for :meth:`workon` (``progress`` defaults to off here).

        Returns
        -------
        Experiment
            ``self``, for chaining.
        """
        from .progress import attach

        max_trials = self._check_writable(max_trials)
        if not isinstance(fill_idle, (int, float)) or not 0 <= fill_idle < 1:
            raise ValueError(f"fill_idle must be a share in [0, 1), got {fill_idle!r}")
        budget = self._budget(max_trials)
        request = drain_requested()
        if budget == 0 or request is not None:  # a drain asked for before the run: run nothing
            if request is not None:
                logger.warning("%s: not starting: drained (%s)", self.name, request.reason)
            self._end_session("nothing to do" if budget == 0 else f"drained: {request.reason}")
            self._history.snapshot()
            return self
        if n_workers is None:
            n_workers = executor.slots()
        objectives = self.objectives
        fn = getattr(executor, "fn", None)
        if objectives and fn is not None and not isinstance(fn, ObjectiveVector):
            # read on the worker: the objective returns a dict of the objectives, not "objective"
            executor.fn = ObjectiveVector(fn, objectives)
        engine = Engine(executor, n_workers=n_workers, retries=retries, max_broken=max_broken,
                        quarantine_after=quarantine_after, on_quarantine=self._on_quarantine)
        self._next_id = self._history.next_trial_id
        logger.info("%s: running up to %s more trials, %d in flight", self.name, budget, n_workers)
        # Executors that can be woken get suggestions from a model thread (daskhpo.engine.suggester).
        self._model, fill = None, None
        if callable(getattr(executor, "wake", None)):
            fill = self._fill if self.optimizer.fills_idle_slots and fill_idle else None
            self._model = Suggester(self._suggest_batch, fill=fill, fill_share=float(fill_idle))
        self._engine = engine
        self._filling = self._model is not None and fill is not None
        self._run_times.clear()
        self._incumbents = []
        if self._filling:
            for record in self._history.records:
                self._keep_incumbent(record)
        ended = "completed"
        try:
            with attach(self, progress=progress, callbacks=callbacks, total=max_trials,
                        done=self._history.finished, n_workers=n_workers):
                engine.run(self._model or self._suggest, self._record, budget, on_report=self._on_report,
                           on_start=self._on_start)
            if self._model is not None and self._model.stats["fills"]:
                logger.info("%s: %d trials filled while the model was busy (fill_idle=%s)",
                            self.name, self._model.stats["fills"], fill_idle)
            if engine.drained is not None:
                ended = f"drained: {engine.drained.reason}"
                logger.warning("%s: drained (%s) after %d finished trials; %d abandoned, to be run again on "
                               "resume", self.name, engine.drained.reason, self._history.finished,
                               len(engine.abandoned))
        except KeyboardInterrupt:
            ended = "interrupted"
            raise
        except BaseException as exc:
            ended = f"error: {type(exc).__name__}: {str(exc).strip().split(chr(10), 1)[0]}"
            raise
        finally:
            self._model = self._engine = None  # hold no executor (nor its client) after the run
            self._filling = False
            self._end_session(ended)
            self._history.snapshot()
        return self

    @contextlib.contextmanager
    def tmp_executor(self, executor: str = "dask", n_workers: int | None = None, **cluster_kwargs: Any) -> Iterator[Any]:
        """Run :meth:`workon` calls of this block on a temporary local Dask cluster.

        Parameters
        ----------
        executor : {"dask"}
        n_workers : int, optional
            Worker processes of the :class:`~distributed.LocalCluster` (one thread each).
        **cluster_kwargs
            Passed to :class:`~distributed.LocalCluster`.

        Yields
        ------
        distributed.Client
        """
        if executor != "dask":
            raise ValueError(f"unknown executor {executor!r}; only 'dask' is supported")
        from distributed import Client, LocalCluster

        cluster_kwargs.setdefault("threads_per_worker", 1)
        with LocalCluster(n_workers=n_workers, **cluster_kwargs) as cluster, Client(cluster) as client:
            self._client = client
            try:
                yield client
            finally:
                self._client = None


@contextlib.contextmanager
def _client_for(client: Any) -> Iterator[Any]:
    """The given client, the current one, or an implicit local cluster's for the duration."""
    if client is not None:
        yield client
        return
    from distributed import default_client

    try:
        current = default_client()
    except ValueError:  # no client: not an error of the block below
        current = None
    if current is not None:
        yield current
        return
    with implicit_client() as local:
        yield local


@contextlib.contextmanager
def implicit_client() -> Iterator[Any]:
    """A Dask client of an in-process :class:`~distributed.LocalCluster`, closed afterwards.

    The cluster that :meth:`Experiment.workon` starts when no client is given or current.
    Its workers are **threads** of this process, so that a plain script with no
    ``if __name__ == "__main__":`` guard runs as pasted: worker *processes* would be
    started by re-importing the script (``multiprocessing``'s spawn), which would build
    the experiment again (``StorageLocked``) and start another cluster (``Nanny failed
    to start``).  The cost: objectives that hold the GIL (pure Python) run one at a
    time; numpy, scikit-learn, PyTorch and subprocesses release it.  Give a client of a
    process cluster for those (docs: "Threads or processes").

    It listens on the loopback interface only: the scheduler and workers talk in-process
    (``inproc://``), and the Dask dashboard and the workers' HTTP servers listen on
    ``127.0.0.1``, on free ports (never ``0.0.0.0:8787``).

    Yields
    ------
    distributed.Client
        The default client while the block runs.
    """
    import dask
    from distributed import Client, LocalCluster
    from distributed.deploy.utils import nprocesses_nthreads

    # the same workers and threads as LocalCluster's process default, so that quarantine
    # and n_workers see the usual topology; memory_limit=0: in-process workers all measure
    # this one process's memory, and would pause at a fraction of it that is not theirs
    n_workers, threads_per_worker = nprocesses_nthreads()
    logger.info("No Dask client: starting an in-process LocalCluster (%d workers x %d threads) for this run",
                n_workers, threads_per_worker)
    loopback = "127.0.0.1:0"  # the workers' HTTP servers too: they listen on 0.0.0.0 otherwise
    # the dashboard link names the host of the in-process address, which it does not listen on
    with dask.config.set({"distributed.dashboard.link": "{scheme}://127.0.0.1:{port}/status"}), \
            LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, processes=False,
                         memory_limit=0, dashboard_address=loopback, worker_dashboard_address=loopback) as cluster, \
            Client(cluster) as local:
        yield local


def _space_diff(stored: Space, given: Space) -> str:
    lines = []
    for name in sorted(set(stored) | set(given)):
        a = str(stored[name]) if name in stored else "(absent)"
        b = str(given[name]) if name in given else "(absent)"
        mark = "  " if a == b else "! "
        lines.append(f"{mark}{name}: stored {a} | given {b}")
    return "\n".join(lines)


#: the experiment of this process that writes each storage path (by its real path)
_WRITERS: weakref.WeakValueDictionary[str, Experiment] = weakref.WeakValueDictionary()


def _storage_lock(storage: str | os.PathLike) -> StorageLock:
    """The storage's writer lock: taken from another process's hands never, from ours over.

    A second :func:`build_experiment` of the same path in this process (a notebook cell run
    again, a script resuming what it just ran) takes over from the first experiment object,
    which stops writing; another process holding it raises
    :class:`~daskhpo.storage_lock.StorageLocked`.
    """
    previous = _WRITERS.pop(os.path.realpath(storage), None)
    if previous is not None and previous._lock is not None:
        lock = previous._lock
        previous._release_storage(superseded=True)
        return lock
    return StorageLock(storage).acquire()


def _replay(optimizer: Optimizer, history: History, teller: _Teller) -> None:
    """Tell ``optimizer`` every stored event in the order the live optimizer saw them."""
    params = {r.trial: r.params for r in history.records}
    for event in history.events():
        if isinstance(event, TrialRecord):
            optimizer.tell(teller.trial(event))
        else:
            optimizer.report(teller.report(event, params[event.trial]))


def _warm_start_trials(
    path: str | os.PathLike, space: Space, direction: str, objectives: Mapping[str, str]
) -> list[TrialRecord]:
    """The completed trials of the experiment stored at ``path``, as this space's warm start.

    In the order they finished there, renumbered from :data:`WARM_START_ID`, without lineage.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"warm_start: no experiment stored at {os.fspath(path)!r}")
    other, attrs, events = read_history(path)
    if set(other) != set(space):
        raise ValueError(
            f"warm_start {os.fspath(path)!r} has parameters {sorted(other)}, this space {sorted(space)}; "
            "a warm start needs the same parameter names"
        )
    other_direction = str(attrs.get("direction", "minimize"))
    if other_direction != direction:
        raise ValueError(f"warm_start {os.fspath(path)!r} was run with direction={other_direction!r}, "
                         f"this experiment with direction={direction!r}")
    if objectives_from_attrs(attrs) != dict(objectives):
        raise ValueError(f"warm_start {os.fspath(path)!r} has objectives {objectives_from_attrs(attrs) or 'one'}, "
                         f"this experiment {dict(objectives) or 'one'}")
    done = sorted((e for e in events if isinstance(e, TrialRecord) and e.ok), key=lambda r: r.seq)
    out = []
    for k, record in enumerate(done):
        try:
            params = space.validate(record.params)
        except ValueError as exc:
            raise ValueError(f"warm_start {os.fspath(path)!r}, trial {record.trial}: {exc}") from None
        out.append(record.replace(trial=WARM_START_ID + k, params=params, parent=None, checkpoint_from=None))
    logger.info("warm start from %s: %d completed trials", path, len(out))
    return out


def build_experiment(
    name: str,
    space: Mapping[str, str | Dimension] | Space,
    algorithm: Any = None,
    storage: str | os.PathLike | None = None,
    seed: int | None = None,
    snapshot_interval: float = 30.0,
    fsync: bool = False,
    direction: str | None = None,
    warm_start: str | os.PathLike | None = None,
    keep_checkpoints: str | int = "all",
    objectives: Mapping[str, str] | None = None,
) -> Experiment:
    """Create an experiment, or resume the one stored at ``storage``.

    Parameters
    ----------
    name : str
        The experiment's name (stored in the history's attrs).
    space : dict or Space
        Parameter names to priors, e.g. ``{"lr": "loguniform(1e-5, 1)"}``.
    algorithm : str, (str, dict) or Optimizer, optional
        An algorithm name (see :func:`daskhpo.optimizers.available`), a name with its
        configuration, or an optimizer object.  Default: the stored one when resuming,
        else ``"random"``.  A resumed experiment given another algorithm uses it (say, a
        model warm-started from a random search); the change is logged and kept in the
        attr ``algorithm_history``.
    storage : path, optional
        Where the history is kept (netCDF-4 plus a journal).  An existing history there is
        resumed: its events are replayed to the optimizer in their original order, and its
        trials count towards ``max_trials``.
    seed : int, optional
        Seed of the optimizer; default the stored one when resuming, else a fresh one.
    snapshot_interval : float, default 30
        Seconds between full rewrites of the storage file while trials arrive.
    fsync : bool, default False
        Force each journal line to the disk before the optimizer hears of it (survives a
        node's crash or power cut, not only the process's; costs a disk flush per event).
    direction : {"minimize", "maximize"}, optional
        Whether the objective is minimized or maximized.  Default: the stored one when
        resuming, else ``"minimize"``.  Optimizers always minimize: for ``"maximize"`` the
        experiment tells them the negated objective (and negated intermediate reports, so
        ASHA, Hyperband and PBT decisions follow), while the history, :attr:`Experiment.best`,
        the plots and the dashboard show the values the objective returned.  Stored in the
        history's attr ``direction``.
    warm_start : path, optional
        The storage of another experiment over the same parameters (each completed trial's
        values within this space's priors; same direction).  Its completed trials are told
        to the optimizer before anything else, in the order they finished there, as trials
        ``WARM_START_ID + k`` (k = 0, 1, ...) without lineage; they are not copied into this
        history and do not count towards ``max_trials``.  Only when the experiment is
        created: the path is stored in the attr ``warm_start`` and the trials are told
        again on every resume (the file must still be there).  Not for ``pbt``, whose
        population is made of its own lineages.
    keep_checkpoints : {"all", "best"} or int, default "all"
        Which trial checkpoints (:func:`daskhpo.report`'s ``checkpoint=``) are kept:
        all; those of the best trial; or those of the ``N`` most recent trials.  Whatever
        the choice, a checkpoint that a running trial starts from, or that the optimizer
        may still start one from (:meth:`~daskhpo.optimizers.Optimizer.needed_checkpoints`:
        each PBT member's last segment, ASHA's and Hyperband's results that may still be
        promoted), is kept; an optimizer that cannot tell keeps all.  Checked after each
        finished trial (files in ``<storage>.checkpoints/``, or the client's memory).
    objectives : dict, optional
        Several objectives searched at once, name -> ``"minimize"`` or ``"maximize"``, e.g.
        ``{"error": "minimize", "latency_ms": "minimize"}`` (not with ``direction``).  The
        objective then returns a dict with each of them (and any other metrics); the
        history holds one variable per objective, :attr:`Experiment.pareto_front` the
        non-dominated trials, and :attr:`Experiment.best` raises.  Only algorithms that
        search several objectives (``random``, ``evolution`` in its NSGA-II mode,
        ``parego``) are accepted.  Default: the stored ones when resuming.  Stored in the
        history's attr ``objectives``.

    Raises
    ------
    ValueError
        For an invalid space, algorithm or ``direction``, a reserved parameter name, a
        ``storage`` holding an experiment with another space (the message shows both) or
        stored with the other direction, or a ``warm_start`` that is not compatible.
    daskhpo.storage_lock.StorageLocked
        When another process writes ``storage`` (the message names its host and pid).
        One process writes a storage path at a time; the lock is the operating system's
        (``flock`` on ``<storage>.lock``), released when the holder exits or dies, even
        by SIGKILL.  :meth:`Experiment.close` releases it earlier.
    """
    if direction is not None:
        check_direction(direction)
    space = Space(space)
    if objectives is not None:
        objectives = check_objectives(objectives, params=space)
        if direction is not None:
            raise ValueError(f"direction={direction!r} and objectives={objectives!r} were both given; with several "
                             "objectives give each one's direction in objectives= and leave direction out")
    reserved = sorted(set(space) & RESERVED)
    if reserved:
        raise ValueError(f"parameter name(s) {reserved} are reserved by the history; rename them")
    events: list = []
    stored: dict[str, Any] = {}
    # Taken before the history is read, so that what is read stays the truth.
    lock = None if storage is None else _storage_lock(storage)
    if storage is not None and os.path.exists(storage):
        stored_space, stored, events = read_history(storage)
        if stored_space != space:
            raise ValueError(
                f"storage {os.fspath(storage)!r} holds experiment {stored.get('name')!r} with "
                f"another space:\n{_space_diff(stored_space, space)}"
            )
        stored_objectives = objectives_from_attrs(stored)
        if objectives is not None and objectives != stored_objectives:
            held = f"objectives {stored_objectives}" if stored_objectives else "one objective"
            raise ValueError(f"objectives={objectives!r}, but storage {os.fspath(storage)!r} holds an experiment with "
                             f"{held}; leave objectives out to resume it")
        if stored_objectives and direction is not None:
            raise ValueError(f"direction={direction!r}, but storage {os.fspath(storage)!r} holds an experiment "
                             f"with objectives {stored_objectives}; leave direction out to resume it")
        objectives = stored_objectives or None
        stored_direction = str(stored.get("direction", "minimize"))
        if direction is not None and direction != stored_direction:
            raise ValueError(
                f"direction={direction!r}, but storage {os.fspath(storage)!r} holds an experiment that "
                f"{stored_direction[:-1]}es its objective; leave direction out to resume it"
            )
        direction = stored_direction
        stored_warm = stored.get("warm_start") or None
        if warm_start is not None and (stored_warm is None or os.path.abspath(warm_start) != stored_warm):
            raise ValueError(
                f"warm_start={os.fspath(warm_start)!r}: storage {os.fspath(storage)!r} holds an experiment "
                f"created with warm_start={stored_warm!r}; a warm start is given only when an experiment is "
                "created (leave it out to resume)"
            )
        warm_start = stored_warm
        if seed is None:
            seed = int(stored["seed"])
        if algorithm is None and "algorithm" in stored:
            algorithm = (stored["algorithm"], json.loads(stored.get("algorithm_config", "{}")))
        logger.info("%s: resuming from %s (%d events)", name, storage, len(events))
    if seed is None:
        seed = make_optimizer("random", space, None).seed
    optimizer = make_optimizer("random" if algorithm is None else algorithm, space, seed)
    attrs = {
        "name": name,
        "space": json.dumps(space.to_dict()),
        "algorithm": optimizer.name or type(optimizer).__name__,
        "algorithm_config": json.dumps(optimizer.config),
        "seed": int(optimizer.seed),
        "daskhpo_version": __version__,
        "direction": direction or "minimize",
    }
    if objectives:
        del attrs["direction"]  # each objective has its own
        attrs["objectives"] = json.dumps(objectives)
        if not type(optimizer).multi_objective:
            searchers = sorted(n for n in available() if optimizer_class(n).multi_objective)
            raise ValueError(
                f"algorithm {attrs['algorithm']!r} optimizes one objective, and this experiment has objectives "
                f"{list(objectives)}; use one of {searchers} (e.g. ('parego', {{'sampler': 'tpe'}}))"
            )
        if keep_checkpoints == "best":
            raise ValueError(f"keep_checkpoints='best' needs one objective; this experiment has objectives "
                             f"{list(objectives)} (keep 'all' or the N most recent)")
    warm: list[TrialRecord] = []
    if warm_start is not None:
        if optimizer.name == "pbt":
            raise ValueError("warm_start is not supported by the 'pbt' algorithm (its population is its own lineages)")
        attrs["warm_start"] = os.path.abspath(warm_start)
        warm = _warm_start_trials(warm_start, space, attrs.get("direction", "minimize"), objectives or {})
    changes = json.loads(stored.get("algorithm_history", "[]"))
    if not changes and stored.get("algorithm"):
        changes = [{"algorithm": stored["algorithm"], "config": json.loads(stored.get("algorithm_config", "{}")), "from_trial": 0}]
    current = {"algorithm": attrs["algorithm"], "config": json.loads(attrs["algorithm_config"])}
    if not changes or {k: changes[-1][k] for k in current} != current:
        if changes:
            logger.warning("%s: stored with algorithm %s %s, continuing with %s %s", name, changes[-1]["algorithm"],
                           changes[-1]["config"], current["algorithm"], current["config"])
        from_trial = max((e.trial + 1 for e in events if isinstance(e, TrialRecord)), default=0)
        changes.append({**current, "from_trial": from_trial})
    attrs["algorithm_history"] = json.dumps(changes)
    if "quarantined" in stored:
        attrs["quarantined"] = stored["quarantined"]
    if storage is not None:  # this process writes it from now on (daskhpo.sessions)
        attrs[sessions.ATTR] = sessions.begin(stored)
    history = History(space, attrs, storage, events, snapshot_interval, fsync=fsync)
    checkpoints = CheckpointStore(storage, keep=keep_checkpoints)
    experiment = Experiment(name, space, optimizer, history, checkpoints=checkpoints)
    for record in warm:  # before this experiment's own events, on resume as when it was created
        optimizer.tell(experiment._teller.trial(record))
    _replay(optimizer, history, experiment._teller)
    # objectives for "best", as the optimizer sees them
    checkpoints.retain(None, {r.trial: experiment._sign * r.objective for r in history.records if r.ok})
    if lock is not None:
        experiment._take_lock(lock)
    return experiment


def create_experiment(
    name: str,
    space: Mapping[str, str | Dimension] | Space,
    algorithm: Any = "random",
    *,
    max_trials: int | None = None,
    storage: str | os.PathLike | None = None,
    seed: int | None = None,
    algorithms: Any = None,
    **kwargs: Any,
) -> Experiment:
    """Like :func:`build_experiment`, with a default ``max_trials`` (as ``orion.client``).

    Parameters
    ----------
    name, space, algorithm, storage, seed
        As in :func:`build_experiment`.
    max_trials : int, optional
        The default of :meth:`Experiment.workon`'s ``max_trials``.
    algorithms : str or dict, optional
        Orion's spelling: ``"random"`` or ``{"tpe": {config}}`` (a ``seed`` in the
        configuration is the experiment's ``seed``); overrides ``algorithm``.
    **kwargs
        Passed to :func:`build_experiment` (``snapshot_interval``).

    Examples
    --------
    >>> experiment = create_experiment(name="dask", max_trials=200, space={"x": "uniform(0, 1)"})
    >>> experiment.max_trials
    200
    """
    if algorithms is not None:
        if isinstance(algorithms, Mapping):
            if len(algorithms) != 1:
                raise ValueError(f"algorithms must name one algorithm, got {dict(algorithms)!r}")
            ((algo_name, algo_config),) = algorithms.items()
            algo_config = dict(algo_config or {})
            if "seed" in algo_config:  # Orion puts the seed in the algorithm's configuration
                config_seed = algo_config.pop("seed")
                seed = config_seed if seed is None else seed
            algorithm = (algo_name, algo_config)
        else:
            algorithm = algorithms
    if max_trials is not None and (not isinstance(max_trials, int) or max_trials < 0):
        raise ValueError(f"max_trials must be a non-negative integer, got {max_trials!r}")
    experiment = build_experiment(name, space, algorithm, storage=storage, seed=seed, **kwargs)
    experiment.max_trials = max_trials
    return experiment


def load_experiment(path: str | os.PathLike) -> Experiment:
    """Open a stored experiment read-only, for analysis and plots.

    Its attrs keep the algorithm it ran with (``algorithm_history``: each algorithm and
    the first trial it suggested).

    Raises
    ------
    FileNotFoundError
        If nothing is stored at ``path``.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"no experiment stored at {os.fspath(path)!r}")
    space, attrs, events = read_history(path)
    history = History(space, attrs, None, events)
    return Experiment(str(attrs.get("name", "")), space, None, history, read_only=True)
