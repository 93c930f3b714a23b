"""Experiments: a space, an optimizer and a history, run on Dask by :meth:`Experiment.workon`."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import xarray as xr

from . import __version__
from .checkpoints import CheckpointStore
from .engine import Engine
from .history import History, load_history, trial_of
from .optimizers import Optimizer, Report, Trial, make_optimizer
from .results import RESERVED
from .space import Dimension, Space

__all__ = ["Experiment", "build_experiment", "create_experiment", "load_experiment"]

logger = logging.getLogger(__name__)


class Experiment:
    """A named search: its space, its optimizer and its history.

    Build one with :func:`build_experiment`; reopen a stored one for analysis with
    :func:`load_experiment`.
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
        #: callables receiving each finished trial's record (dashboards, loggers)
        self.listeners: list[Callable[[dict], None]] = []
        self._dashboard = None
        #: default ``max_trials`` of :meth:`workon` (set by :func:`create_experiment`)
        self.max_trials: int | None = None

    def __repr__(self) -> str:
        return f"<Experiment {self.name!r}: {len(self._history)} trials, {self.optimizer!r}>"

    # -- results -----------------------------------------------------------------------
    @property
    def history(self) -> xr.Dataset:
        """Every trial so far, as an :class:`xarray.Dataset` (see :mod:`daskhpo.history`)."""
        return self._history.to_dataset()

    @property
    def trials(self) -> list[Trial]:
        """Every trial so far, as the optimizers see them."""
        return self._history.trials()

    @property
    def best(self) -> dict[str, Any] | None:
        """The best completed trial: ``{"params", "objective", "trial"}``, or ``None``."""
        done = [t for t in self._history.trials() if t.ok]
        if not done:
            return None
        best = min(done, key=lambda t: (t.objective, t.id))
        return {"params": dict(best.params), "objective": best.objective, "trial": best.id}

    def trial_reports(self, trial_id: int) -> list[tuple[float, dict[str, float]]]:
        """The intermediate reports of one trial: ``(step, {metric: value})`` in step order."""
        return self._history.reports(trial_id)

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
    def _suggest(self) -> tuple[int, dict[str, Any], dict[str, Any]] | None:
        trial_id = self._next_id
        extra: dict[str, Any] = {}
        if trial_id == 0 and self.space.defaults() is not None:
            params = self.space.defaults()
        else:
            suggestion = self.optimizer.ask(trial_id)
            if suggestion is None:
                return None
            try:
                params = self.space.validate(suggestion.params)
            except ValueError as exc:
                raise ValueError(f"{self.optimizer!r} suggested an invalid configuration: {exc}") from None
            extra = {
                "parent": suggestion.parent,
                "checkpoint": suggestion.checkpoint,
                "state": self._checkpoints.get(suggestion.checkpoint),
            }
        self._next_id += 1
        return trial_id, params, extra

    def _on_report(self, report: dict) -> str:
        # Journaled before the optimizer decides on it, like a finished trial.
        values = dict(report["values"])
        self._history.append_report(report["trial"], report["step"], values)
        objective = values.pop("objective", float("nan"))
        return self.optimizer.report(Report(report["trial"], report["params"], report["step"], objective, values))

    def _record(self, record: dict) -> None:
        # On disk before the optimizer hears of it: nothing told is ever lost.
        record = dict(record)
        self._checkpoints.put(record["trial"], record.pop("state", None))
        record["checkpoint_from"] = record.pop("checkpoint", None)
        self._history.append(record)
        trial = trial_of(record)
        self.optimizer.tell(trial)
        for listener in self.listeners:
            try:
                listener(record)
            except Exception:
                logger.exception("listener %r failed", listener)

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
        worker_timeout: float = 60.0,
        dashboard: bool | int = False,
        progress: bool | None = None,
        callbacks: Sequence[Callable[[dict], Any]] | None = None,
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
            Trials in flight.  Default: the connected workers' threads.  Set it to your
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
            this call.
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
        **fn_kwargs
            Fixed keyword arguments passed to every call of ``fn``.

        Returns
        -------
        Experiment
            ``self``, for chaining.
        """
        if self.read_only:
            raise RuntimeError(f"experiment {self.name!r} was loaded read-only; use build_experiment to resume it")
        if max_trials is None:
            max_trials = self.max_trials
        if max_trials is not None and (not isinstance(max_trials, int) or max_trials < 0):
            raise ValueError(f"max_trials must be a non-negative integer, got {max_trials!r}")
        clash = sorted(set(fn_kwargs) & set(self.space))
        if clash:
            raise ValueError(f"fixed keyword argument(s) {clash} are also parameters of the space")
        done = self._history.count("completed") + self._history.count("pruned")
        budget = None if max_trials is None else max(max_trials - done, 0)
        if budget == 0:
            return self
        with _client_for(client or self._client) as dask_client:
            engine = Engine(
                dask_client,
                fn,
                n_workers=n_workers,
                resources=resources,
                retries=retries,
                trial_timeout=trial_timeout,
                max_broken=max_broken,
                fn_kwargs=fn_kwargs,
                worker_timeout=worker_timeout,
            )
            if dashboard:
                from .dashboard import dask_link

                board = self.dashboard(0 if dashboard is True else int(dashboard))
                board.dask_link = dask_link(dask_client)
                logger.info("%s: live dashboard at %s", self.name, board.url)
            self._next_id = self._history.next_trial_id
            logger.info("%s: running up to %s trials, %d in flight", self.name, budget, engine.n_workers)
            from .progress import attach

            try:
                with attach(self, progress=progress, callbacks=callbacks, total=max_trials, done=done,
                            n_workers=engine.n_workers):
                    engine.run(self._suggest, self._record, budget, on_report=self._on_report)
            finally:
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
    """The given client, the current one, or a LocalCluster's for the duration."""
    if client is not None:
        yield client
        return
    from distributed import Client, LocalCluster, default_client

    try:
        current = default_client()
    except ValueError:  # no client: not an error of the block below
        current = None
    if current is not None:
        yield current
        return
    logger.info("No Dask client: starting a LocalCluster for this run")
    with LocalCluster() as cluster, Client(cluster) as local:
        yield local


def _space_diff(stored: Space, given: Space) -> str:
    lines = []
    for name in sorted(set(stored) | set(given)):
        a = str(stored[name]) if name in stored else "(absent)"
        b = str(given[name]) if name in given else "(absent)"
        mark = "  " if a == b else "! "
        lines.append(f"{mark}{name}: stored {a} | given {b}")
    return "\n".join(lines)


def build_experiment(
    name: str,
    space: Mapping[str, str | Dimension] | Space,
    algorithm: Any = "random",
    storage: str | os.PathLike | None = None,
    seed: int | None = None,
    snapshot_interval: float = 30.0,
) -> Experiment:
    """Create an experiment, or resume the one stored at ``storage``.

    Parameters
    ----------
    name : str
        The experiment's name (stored in the history's attrs).
    space : dict or Space
        Parameter names to priors, e.g. ``{"lr": "loguniform(1e-5, 1)"}``.
    algorithm : str, (str, dict) or Optimizer, default "random"
        An algorithm name (see :func:`daskhpo.optimizers.available`), a name with its
        configuration, or an optimizer object.
    storage : path, optional
        Where the history is kept (netCDF-4 plus a journal).  An existing history there is
        resumed: its trials count towards ``max_trials`` and are told to the optimizer.
    seed : int, optional
        Seed of the optimizer; default a fresh one (stored, and reused on resume).
    snapshot_interval : float, default 30
        Seconds between full rewrites of the storage file while trials arrive.

    Raises
    ------
    ValueError
        For an invalid space or algorithm, a reserved parameter name, or a ``storage``
        holding an experiment with another space (the message shows both).
    """
    space = Space(space)
    reserved = sorted(set(space) & RESERVED)
    if reserved:
        raise ValueError(f"parameter name(s) {reserved} are reserved by the history; rename them")
    records: list[dict] = []
    if storage is not None and os.path.exists(storage):
        stored_space, attrs, records = load_history(storage)
        if stored_space != space:
            raise ValueError(
                f"storage {os.fspath(storage)!r} holds experiment {attrs.get('name')!r} with "
                f"another space:\n{_space_diff(stored_space, space)}"
            )
        if seed is None:
            seed = int(attrs["seed"])
        logger.info("%s: resuming from %s (%d trials)", name, storage, len(records))
    if seed is None:
        seed = make_optimizer("random", space, None).seed
    optimizer = make_optimizer(algorithm, space, seed)
    attrs = {
        "name": name,
        "space": json.dumps(space.to_dict()),
        "algorithm": optimizer.name or type(optimizer).__name__,
        "algorithm_config": json.dumps(optimizer.config),
        "seed": int(optimizer.seed),
        "daskhpo_version": __version__,
    }
    history = History(space, attrs, storage, records, snapshot_interval)
    for trial in history.trials():
        for step, values in history.reports(trial.id):
            values = dict(values)
            objective = values.pop("objective", float("nan"))
            optimizer.report(Report(trial.id, dict(trial.params), step, objective, values))
        optimizer.tell(trial)
    return Experiment(name, space, optimizer, history, checkpoints=CheckpointStore(storage))


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

    Raises
    ------
    FileNotFoundError
        If nothing is stored at ``path``.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"no experiment stored at {os.fspath(path)!r}")
    space, attrs, records = load_history(path)
    history = History(space, attrs, None, records)
    return Experiment(str(attrs.get("name", "")), space, None, history, read_only=True)
