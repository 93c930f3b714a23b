"""Building an experiment: create or resume one (:func:`build_experiment`,
:func:`create_experiment`) and open a stored one for analysis (:func:`load_experiment`)."""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from ..objectives import check_objectives, objectives_from_attrs
from ..results import RESERVED
from ..space import Dimension, Space
from ..store import History, MemoryStorage, NetCDFStorage, open_storage
from .facade import Experiment
from .resume import reconcile, unconsumed, warm_start_trials
from .state import dump_queue
from .teller import Teller, check_direction, handles_constraints

__all__ = ["build_experiment", "create_experiment", "load_experiment"]

logger = logging.getLogger(__name__)


def build_experiment(
    name: str,
    space: Mapping[str, str | Dimension] | Space | None = None,
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
        The experiment's name (stored in the history's attrs).  Resuming takes the stored
        name: another one raises ``ValueError``.
    space : dict or Space, optional
        Parameter names to priors, e.g. ``{"lr": "loguniform(1e-5, 1)"}``.  Needed to
        create an experiment; when resuming, default the stored space
        (``build_experiment(name, storage=path)`` continues from the file alone).
    algorithm : str, (str, dict) or Optimizer, optional
        An algorithm name (see :func:`daskhpo.optimizers.available`), a name with its
        configuration, or an optimizer object.  Default: the stored one when resuming,
        else ``"random"``.  A resumed experiment given another algorithm uses it (say, a
        model warm-started from a random search); the change is logged, and written
        (the attrs ``algorithm``, ``algorithm_config``, ``seed`` and an entry of
        ``algorithm_history``) when a run of this experiment starts: a call that runs
        nothing leaves the stored experiment as it was.
    storage : path, optional
        Where the history is kept (netCDF-4 plus a journal).  An existing history there is
        resumed: its events are replayed to the optimizer in their original order, its
        trials count towards ``max_trials``, and the configurations enqueued but not run
        (:meth:`Experiment.enqueue`) run first.
    seed : int, optional
        Seed of the optimizer; default the stored one when resuming, else a fresh one.
        Another seed when resuming is treated as another algorithm: logged, and kept in
        ``algorithm_history`` when a run starts.
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
        ``storage`` holding an experiment with another name or space (the message shows
        both spaces) or stored with the other direction, a ``warm_start`` that is not
        compatible, or no ``space`` for an experiment that is not stored yet.
    daskhpo.store.lock.StorageLocked
        When another process writes ``storage`` (the message names its host and pid).
        One process writes a storage path at a time; the lock is the operating system's
        (``flock`` on ``<storage>.lock``), released when the holder exits or dies, even
        by SIGKILL.  :meth:`Experiment.close` releases it earlier.
    """
    if direction is not None:
        check_direction(direction)
    if space is not None:
        space = Space(space)
        reserved = sorted(set(space) & RESERVED)
        if reserved:
            raise ValueError(f"parameter name(s) {reserved} are reserved by the history; rename them")
    if objectives is not None and direction is not None:
        raise ValueError(f"direction={direction!r} and objectives={dict(objectives)!r} were both given; with several "
                         "objectives give each one's direction in objectives= and leave direction out")
    store = open_storage(storage, snapshot_interval=snapshot_interval, fsync=fsync)
    store.claim()  # before the history is read, so that what is read stays the truth
    try:
        stored = store.read()
        if space is None:
            if stored is None:
                where = os.fspath(storage) if storage else None
                raise ValueError(f"build_experiment({name!r}): nothing is stored at storage={where!r}, so space is "
                                 "needed to create the experiment (only a stored one resumes without it)")
            space = stored.space
        if objectives is not None:
            objectives = check_objectives(objectives, params=space)
        found = reconcile(name, space, stored, storage, algorithm=algorithm, seed=seed, direction=direction,
                          objectives=objectives, warm_start=warm_start, keep_checkpoints=keep_checkpoints)
    except ValueError:
        store.close()  # refused before anything was written: let go of the lock at once
        raise
    history = store.open(space, found.attrs, found.events, stored_attrs=found.stored_attrs,
                         keep_checkpoints=keep_checkpoints)
    optimizer = found.optimizer
    teller = Teller(found.attrs.get("direction", "minimize"), handles_constraints(optimizer),
                    objectives_from_attrs(found.attrs))
    # the warm start before this experiment's own events, on resume as when it was created
    teller.replay(found.warm, history.events(), tell=optimizer.tell, decide=optimizer.report)
    # objectives for "best", as the optimizer sees them
    store.checkpoints.retain(None, {r.trial: teller.sign * r.objective for r in history.records if r.ok})
    return Experiment(name, space, optimizer, store, warm=found.warm, teller=teller, on_run=found.on_run)


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
    """Open a stored experiment for analysis and plots, without taking its writer lock.

    It reads what is stored and writes nothing, so it works while another process runs
    the search.  Its attrs keep the algorithm it ran with (``algorithm_history``: each
    algorithm, its configuration and seed, and the first trial it suggested).

    To continue the search, call :meth:`~Experiment.workon` (or :meth:`~Experiment.run`,
    :meth:`~Experiment.enqueue`) on it: it is then resumed as
    ``build_experiment(name, storage=path)`` does (the stored space, algorithm, seed and
    enqueued configurations), taking the writer lock at that moment
    (:class:`~daskhpo.store.lock.StorageLocked` while another process writes it).

    Raises
    ------
    FileNotFoundError
        If nothing is stored at ``path``.
    daskhpo.store.CorruptStorage
        For a damaged snapshot or journal (nothing is changed; the message says what to do).
    """
    stored = NetCDFStorage(path).read()  # a journal whose snapshot is missing is read alone
    if stored is None:
        raise FileNotFoundError(f"no experiment stored at {os.fspath(path)!r}")
    space, attrs, events = stored
    if "enqueued" in attrs:  # as a resume would find it: without the configurations that ran
        attrs["enqueued"] = dump_queue(unconsumed(attrs["enqueued"], events, space, str(attrs.get("name", ""))))
    history = History(space, attrs, None, events)
    name = str(attrs.get("name", ""))
    return Experiment(name, space, None, MemoryStorage(history), read_only=True,
                      warm=_warm_or_none(attrs, space), resume=functools.partial(build_experiment, name, storage=path))


def _warm_or_none(attrs: Mapping[str, Any], space: Space) -> list:
    """The warm start a stored experiment was told, to show :attr:`Experiment.trials` as told;
    nothing when its file is gone or changed (a read-only view does not fail for it)."""
    path = attrs.get("warm_start")
    if not path:
        return []
    try:
        objectives = json.loads(attrs["objectives"]) if attrs.get("objectives") else {}
        return warm_start_trials(path, space, str(attrs.get("direction", "minimize")), objectives)
    except (OSError, ValueError) as exc:
        logger.info("%s: its warm start %s cannot be read (%s): trials are shown as told without it",
                    attrs.get("name"), path, exc)
        return []
