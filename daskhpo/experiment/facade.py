"""The experiment: a space, an optimizer and a history, run on Dask by :meth:`Experiment.workon`.

:class:`Experiment` is a facade.  Its read API is :class:`~daskhpo.experiment.view.ExperimentView`;
each run's state is a :class:`~daskhpo.experiment.run.Run`; what the optimizer is told comes
from :mod:`~daskhpo.experiment.teller`; the events go through a
:class:`~daskhpo.store.Storage`; building, resuming and loading are in
:mod:`~daskhpo.experiment.build`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ..engine import Executor
from ..engine.broken import MaxBroken, check_max_broken
from ..engine.drain import drain_requested
from ..engine.lifetimes import Lifetimes
from ..engine.packed import workon_executor
from ..optimizers import Optimizer
from ..records import TrialRecord
from ..space import Space
from ..store import CheckpointStore, History, MemoryStorage, Storage
from .clients import client_for, temporary_client
from .run import Run, check_options
from .state import Subscribers, state_of_an_older_pickle, stored_queue
from .teller import Teller
from .view import ExperimentView

__all__ = ["Experiment"]

logger = logging.getLogger(__name__)


class Experiment(ExperimentView):
    """A named search: its space, its optimizer and its history.

    Build one with :func:`build_experiment`; reopen a stored one for analysis with
    :func:`load_experiment`.  Other layers (plots, the dashboard, progress bars, loggers)
    read it through :meth:`records` and :meth:`subscribe`, both safe to call from any
    thread while :meth:`workon` runs.

    Parameters
    ----------
    name : str
    space : Space
    optimizer : Optimizer or None
        ``None`` for an experiment loaded read-only.
    storage : Storage or History
        Where its events go (a :class:`~daskhpo.store.History` alone: in memory).
    read_only : bool, default False
    checkpoints : CheckpointStore, optional
        With a ``History``: its checkpoints (default: beside the history's path, or in memory).
    warm : list of TrialRecord, optional
        A warm start's trials, which the optimizer was told before this experiment's own.
    teller : Teller, optional
        The teller that told ``optimizer`` the stored events (default: a fresh one).
    on_run : dict, optional
        Attrs to write when a run starts (another algorithm or seed than the stored one).
    resume : callable, optional
        Loaded read-only: makes the writer that :meth:`workon`, :meth:`run`, :meth:`enqueue` turn it into.
    """

    def __init__(
        self,
        name: str,
        space: Space,
        optimizer: Optimizer | None,
        storage: Storage | History,
        read_only: bool = False,
        checkpoints: CheckpointStore | None = None,
        *,
        warm: Sequence[TrialRecord] = (),
        teller: Teller | None = None,
        on_run: Mapping[str, Any] | None = None,
        resume: Callable[[], Experiment] | None = None,
    ) -> None:
        self.name = name
        self.space = space
        self.optimizer = optimizer
        if isinstance(storage, History):
            storage = MemoryStorage(storage, checkpoints)
        self._storage = storage
        self.read_only = read_only
        self._warm = list(warm)
        self._client = None
        self._subscribers = Subscribers()
        self._dashboard = None
        #: the run under way (see :mod:`daskhpo.experiment.run`), if any
        self._run: Run | None = None
        #: default ``max_trials`` of :meth:`workon` (set by :func:`create_experiment`)
        self.max_trials: int | None = None
        #: what the optimizer is told; it remembers the worst values told so far (penalties)
        self._teller = teller if teller is not None else self._new_teller()
        self._on_run = dict(on_run or {})
        self._resume = resume
        #: configurations to run next (see :meth:`enqueue`), kept in the attr ``enqueued``
        self._queue = stored_queue(self._history, space, writing=optimizer is not None)

    @property
    def _checkpoints(self) -> CheckpointStore:
        return self._storage.checkpoints

    def __repr__(self) -> str:
        return f"<Experiment {self.name!r}: {len(self._history)} trials, {self.optimizer!r}>"

    # -- lifetime ----------------------------------------------------------------------
    def close(self) -> None:
        """Write the history, stop writing to the storage and release its lock.

        The experiment stays readable.  Also called when leaving a ``with`` block.
        """
        self._storage.close()

    def __enter__(self) -> Experiment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        # Pickled (e.g. inside a fitted SearchCV): the results travel, not the live wiring.
        state = dict(self.__dict__)
        state.update(_storage=MemoryStorage(self._storage.history, self._storage.checkpoints),
                     _dashboard=None, _client=None, _run=None, _resume=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state_of_an_older_pickle(state))
        self.__dict__.setdefault("_teller", self._new_teller())

    def _on_quarantine(self, entry: dict[str, Any]) -> None:
        self._history.attrs["quarantined"] = json.dumps([*self.quarantined, entry])
        logger.warning("%s: worker %s (host %s) quarantined: %s", self.name, entry["worker"], entry["host"], entry["why"])
        with contextlib.suppress(Exception):  # kept in memory at worst; written at the next snapshot
            self._storage.snapshot()

    @property
    def client(self) -> Any:
        """The Dask client of :meth:`tmp_executor`, while its block runs, else ``None``."""
        return self._client

    # -- running -----------------------------------------------------------------------
    def enqueue(self, params: Mapping[str, Any]) -> None:
        """Run this configuration next, before the optimizer's own suggestions.

        Enqueued configurations run in the order given, each in the place of the next
        *new* configuration the optimizer suggests (a promotion or a continuation of a
        running lineage, as ASHA or PBT ask for, keeps its turn).  A partial configuration
        is completed with that suggestion's values of the parameters it leaves out.  The
        optimizer learns what ran when the trial is told, as for every trial.

        The space's defaults (when every dimension has one) are the first enqueued
        configuration of a new experiment.  The queue is stored with the history (the
        attr ``enqueued``, written now): a configuration whose trial has not finished
        when the process ends, by a crash or :meth:`close`, runs on resume, once.  On an
        experiment from :func:`load_experiment`, this resumes it first (see :meth:`workon`).

        Parameters
        ----------
        params : dict
            Parameter name -> value; every value is checked against its prior.

        Raises
        ------
        ValueError
            Naming the parameter, for an unknown name or a value its prior cannot take.
        """
        if not isinstance(params, Mapping):
            raise ValueError(f"enqueue takes a dict of parameter -> value, got {type(params).__name__}")
        unknown = [n for n in params if n not in self.space]
        if unknown:
            raise ValueError(f"enqueue: unknown parameter(s) {unknown}; the space has {list(self.space)}")
        checked = {n: self.space[n].validate(v) for n, v in params.items()}
        self._check_writable(None)
        run = self._run
        # the lowest id of a trial that may run it: no trial stored (or of the run under way) before it
        self._queue.put(checked, after=run.first_id if run is not None else self._history.next_trial_id)
        if run is None:  # on disk now, so that a crash before the run keeps it
            self._storage.snapshot()

    @property
    def enqueued(self) -> list[dict[str, Any]]:
        """The configurations waiting to run (see :meth:`enqueue`), in order."""
        return self._queue.items()

    def workon(
        self,
        fn: Callable[..., Any],
        max_trials: int | None = None,
        *,
        client: Any = None,
        n_workers: int | None = None,
        resources: Mapping[str, float] | Callable[[dict[str, Any]], Mapping[str, float]] | None = None,
        retries: int = 1,
        trial_timeout: float | None = None,
        max_broken: MaxBroken = "auto",
        quarantine_after: int | None = 3,
        timeout: float | None = None,
        timeout_grace: float | None = None,
        worker_timeout: float = 60.0,
        dashboard: bool | int = False,
        progress: bool | None = None,
        callbacks: Sequence[Callable[[dict], Any]] | None = None,
        trials_per_task: int = 1,
        fill_idle: float = 0.25,
        lifetimes: Lifetimes | None = None,
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
            an in-process :class:`~distributed.LocalCluster` of threads, listening on
            loopback, started and closed for this call (see
            :func:`~daskhpo.experiment.clients.implicit_client`).
        n_workers : int, optional
            Trials in flight.  Default: the connected workers' threads (those with the
            ``resources``), plus one in ten queued on the workers so that a freed thread
            starts its next trial without a round trip through the client.  Set it to your
            target size for adaptive clusters, which only grow while trials wait.
        resources : dict or callable, optional
            Dask resources of every trial (``{"GPU": 1}``; ``{"GPU": 0.25}``: four share a GPU), or
            ``resources(params) -> dict`` per configuration (a bad one ends the call before its trial is
            submitted).  GPU trials get their own devices (:func:`daskhpo.current_trial_devices`, history
            ``gpu``); a shared GPU isolates no memory, time-slices compute (MPS, MIG: ``docs/slurm.md``).
        retries : int, default 1
            Further attempts of a trial whose worker died or left mid-trial (e.g. its
            Slurm job was cancelled); each is counted in the history's ``attempts``.
        trial_timeout : float, optional
            Seconds after which a trial is recorded as ``timeout``.
        max_broken : "auto", int or None, default "auto"
            When broken trials (raised, returned NaN, timed out, lost) stop the call with
            :class:`~daskhpo.TooManyBrokenTrials`.  ``"auto"``: only when the objective
            itself looks broken, never because some configurations fail: ``10 + 2 *
            n_workers`` broken in a row with none finished in this call, or a streak that
            long and too unlikely (under 1 in 1,000) at the failure rate seen before it
            (see :mod:`daskhpo.engine.broken`).  An int: once more trials than this broke
            in this call.  ``None``: never.
        quarantine_after : int or None, default 3
            A worker on which this many distinct trials in a row broke (status
            ``broken``) while trials finish on other workers becomes a suspect: those
            trials run again elsewhere (one more ``attempts`` each).  If one fails there
            again with the same error, the parameters are at fault: the worker is cleared
            and the trials count as broken.  If none does, the worker is quarantined
            (retired, no further trial; listed in :attr:`quarantined`).  ``None`` turns it
            off.  On Slurm, see ``docs/slurm.md``.
        timeout : float, optional
            An overall time budget in seconds, from the start of the search: then nothing
            more is submitted, the trials in flight finish (see ``timeout_grace``), the
            history is saved and the call returns normally.
        timeout_grace : float, optional
            Seconds the trials in flight at ``timeout`` get; those still running then are
            cancelled and not recorded (a resumed search runs them again).  Default
            ``None``: they run to their end (bounded by ``trial_timeout``); ``0``: cancel
            them at once.
        worker_timeout : float, default 60
            Seconds without any connected worker (at the start, or after every worker
            left) before :class:`~daskhpo.NoWorkersError`.  Raise it when jobs wait long
            in a batch queue.
        dashboard : bool or int, default False
            Serve the live dashboard (:meth:`dashboard`; an int is its port) and log its
            URL.  It keeps serving after the run; ``experiment.dashboard().stop()`` ends it.
        progress : bool, optional
            A progress bar (tqdm; see :mod:`daskhpo.viz.progress`).  ``None``: only when
            standard error is a terminal or in a notebook; ``True``: always; ``False``: never.
        callbacks : list of callables, optional
            Each receives every finished trial's record (a dict; see
            :func:`daskhpo.viz.progress.attach`), e.g. :class:`daskhpo.integrations.callbacks.TensorBoard`.
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
        lifetimes : daskhpo.Lifetimes, optional
            On workers with an end (Slurm walltimes): how a trial's run time is learned, its margin, the
            least time left to start one (``daskhpo.Lifetimes(margin=1.5, min_left=120)``; ``docs/slurm.md``).
        **fn_kwargs
            Fixed keyword arguments passed to every call of ``fn``.

        Returns
        -------
        Experiment
            ``self``, for chaining.

        Notes
        -----
        An experiment from :func:`load_experiment` is first resumed as
        ``build_experiment(name, storage=path)`` does, taking the writer lock then.
        """
        if clash := sorted(set(fn_kwargs) & set(self.space)):
            raise ValueError(f"fixed keyword argument(s) {clash} are also parameters of the space")
        max_trials, budget = self._check_writable(max_trials)
        check_max_broken(max_broken)  # bad values fail before a cluster starts
        check_options(timeout=timeout, timeout_grace=timeout_grace, lifetimes=lifetimes)
        make_executor = workon_executor(fn, fn_kwargs=fn_kwargs, resources=resources, trial_timeout=trial_timeout,
                                        worker_timeout=worker_timeout, trials_per_task=trials_per_task)  # checked now
        if budget == 0:
            self._storage.end_session("nothing to do")
            self._storage.snapshot()
            return self
        with client_for(client or self._client) as dask_client:
            executor = make_executor(dask_client)  # short trials: several per task (daskhpo.engine.packed)
            if dashboard:
                from ..viz.dashboard import dask_link

                board = self.dashboard(0 if dashboard is True else int(dashboard))
                board.dask_link = dask_link(dask_client)
                logger.info("%s: live dashboard at %s", self.name, board.url)
            self.run(executor, max_trials, n_workers=n_workers, retries=retries, max_broken=max_broken,
                     quarantine_after=quarantine_after, progress=progress, callbacks=callbacks,
                     fill_idle=fill_idle, timeout=timeout, timeout_grace=timeout_grace, lifetimes=lifetimes)
        return self

    def _check_writable(self, max_trials: int | None) -> tuple[int | None, int | None]:
        """``max_trials`` (or the experiment's default) once checked, and the trials left to run; a
        loaded experiment is resumed first."""
        if self.read_only and self._resume is not None:
            self._become_writer()
        if self.read_only:
            raise RuntimeError(f"experiment {self.name!r} was loaded read-only; use build_experiment to resume it")
        if self._storage.superseded:
            raise RuntimeError(f"experiment {self.name!r}: its storage {self.storage!r} was opened again by a later "
                               "build_experiment in this process; use that experiment object")
        if max_trials is None:
            max_trials = self.max_trials
        check_options(max_trials=max_trials)
        return max_trials, None if max_trials is None else max(max_trials - self._history.finished, 0)

    def _become_writer(self) -> None:
        """Resume a loaded experiment in place: take the storage's lock, read it again (another
        process may have run trials since it was loaded) and continue from what is stored."""
        writer = self._resume()  # StorageLocked while another process writes it: stays read-only
        logger.info("%s: resumed for writing from %s", self.name, writer.storage)
        for attr in ("name", "space", "optimizer", "_storage", "_warm", "_teller", "_on_run", "_queue"):
            setattr(self, attr, getattr(writer, attr))
        self.read_only, self._resume = False, None

    def _start_run(self) -> None:
        """Write what changed on resume (another algorithm or seed) now that a run starts."""
        if self._on_run:
            self._history.attrs.update(self._on_run)
            self._on_run = {}
            self._storage.snapshot()

    def run(
        self,
        executor: Executor,
        max_trials: int | None = None,
        *,
        n_workers: int | None = None,
        retries: int = 1,
        max_broken: MaxBroken = "auto",
        quarantine_after: int | None = 3,
        progress: bool | None = False,
        callbacks: Sequence[Callable[[dict], Any]] | None = None,
        fill_idle: float = 0.25,
        timeout: float | None = None,
        timeout_grace: float | None = None,
        lifetimes: Lifetimes | None = None,
    ) -> Experiment:
        """Run trials on any executor until ``max_trials`` trials have finished.

        :meth:`workon` is this with a :class:`~daskhpo.engine.DaskExecutor`; tests and
        simulations pass a :class:`~daskhpo.engine.FakeExecutor` (virtual time).

        Parameters
        ----------
        executor : daskhpo.engine.Executor
        max_trials, n_workers, retries, max_broken, quarantine_after, progress, callbacks, fill_idle, lifetimes
            As for :meth:`workon` (``progress`` defaults to off here).
        timeout, timeout_grace
            As for :meth:`workon`, in seconds of the executor's clock (virtual time on a
            :class:`~daskhpo.engine.FakeExecutor`).

        Returns
        -------
        Experiment
            ``self``, for chaining.
        """
        max_trials, budget = self._check_writable(max_trials)
        check_options(fill_idle=fill_idle, lifetimes=lifetimes)
        request = drain_requested()
        if budget == 0 or request is not None:  # a drain asked for before the run: run nothing
            if request is not None:
                logger.warning("%s: not starting: drained (%s)", self.name, request.reason)
            self._storage.end_session("nothing to do" if budget == 0 else f"drained: {request.reason}")
            self._storage.snapshot()
            return self
        n_workers = executor.slots() if n_workers is None else n_workers
        self._start_run()
        self._run = run = Run(self, self._storage, self._teller, self._queue, self._subscribers, self._on_quarantine)
        try:
            run.execute(executor, budget, max_trials=max_trials, n_workers=n_workers, retries=retries,
                        max_broken=max_broken, quarantine_after=quarantine_after, progress=progress,
                        callbacks=callbacks, fill_idle=fill_idle, timeout=timeout, timeout_grace=timeout_grace,
                        lifetimes=lifetimes)
        finally:
            self._run = None
        if run.interrupted:  # Ctrl-C drained the run, saved: say so from the user's call
            raise KeyboardInterrupt(run.interrupted)
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
            Passed to :class:`~distributed.LocalCluster`.  Its dashboard listens on
            ``127.0.0.1`` on a free port unless ``dashboard_address`` says otherwise.

        Yields
        ------
        distributed.Client
        """
        if executor != "dask":
            raise ValueError(f"unknown executor {executor!r}; only 'dask' is supported")
        with temporary_client(n_workers, **cluster_kwargs) as client:
            self._client = client
            try:
                yield client
            finally:
                self._client = None
