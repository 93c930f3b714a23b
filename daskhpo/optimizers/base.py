"""The one protocol every algorithm implements.

An optimizer is told the space and a seed, then driven by two calls:

``ask(trial_id)``
    Return a :class:`Suggestion` for the trial that will get ``trial_id``, or ``None``
    when it has nothing to run *right now* (a grid that is exhausted, a multi-fidelity
    scheme waiting for results). The engine stops when ``ask`` returns ``None`` and no
    trial is in flight.
``tell(trial)``
    Learn the outcome of a finished :class:`Trial` (completed, broken, timed out, lost,
    pruned). On resume, every stored trial is told again in trial order, including
    trials this instance never suggested.
``report(report) -> decision`` (optional)
    Learn an intermediate result a running trial sent with :func:`daskhpo.report`, and
    decide, as plain data, whether it goes on (:data:`CONTINUE`) or stops (:data:`PRUNE`).
    The default continues every trial.  On resume, a trial's stored reports are replayed
    (in step order) just before the trial itself is told.

Optimizers know nothing of Dask, files or the engine; the engine knows nothing of any
particular optimizer.  Randomness comes only from ``self.rng_for(trial_id)`` (or a
named stream of it, ``self.rng_for(trial_id, stream="...")``), so that the same seed and
the same sequence of results give the same suggestions, and a resumed run does not
repeat earlier draws.

What an optimizer keeps about each trial it was asked for and has not yet been told of
(the point a constant liar lies about, the member a PBT segment belongs to) lives in
``self._pending``, a :class:`PendingTrials`; :attr:`Optimizer.pending` reads it.  After
every asked trial has been told, whatever its status, ``pending`` is empty.

A trial may run with other parameters than the suggestion: the experiment runs the
space's default configuration as trial 0 (it asks for trial 0, then replaces the
parameters).  What ran is what :meth:`Optimizer.tell` says: optimizers learn the
parameters of a trial from ``trial.params``, never from what they suggested.
"""

from __future__ import annotations

import math
import warnings
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..space import Space

__all__ = [
    "Optimizer",
    "Suggestion",
    "Trial",
    "Report",
    "CONTINUE",
    "PRUNE",
    "PendingTrials",
    "check_option",
    "option_error",
]

#: decision of :meth:`Optimizer.report`: the trial goes on
CONTINUE = "continue"
#: decision of :meth:`Optimizer.report`: the trial is stopped (its objective sees
#: :class:`daskhpo.TrialPruned` at its next report) and recorded as ``pruned``
PRUNE = "prune"


@dataclass(frozen=True)
class Suggestion:
    """A decision to run one configuration, as plain data.

    Attributes
    ----------
    params : dict
        Parameter values, one per dimension of the space.
    parent : int, optional
        The trial this one continues in the algorithm's bookkeeping (the trial an ASHA
        promotion promotes, the previous segment of a PBT member); stored in the
        history's ``parent`` variable and told back in :attr:`Trial.parent`.
    checkpoint : int, optional
        The trial whose last checkpoint this one starts from: what
        :func:`daskhpo.load_checkpoint` returns inside the objective (``None``: a fresh
        start).  Stored in the history's ``checkpoint_from`` variable.
    """

    params: dict[str, Any]
    parent: int | None = None
    checkpoint: int | None = None


@dataclass(frozen=True)
class Trial:
    """A finished trial, as optimizers see it: a signed view of its record.

    The experiment derives it from the trial's :class:`~daskhpo.records.TrialRecord`
    (the same fields), with every objective turned into one to minimize and, for an
    algorithm that does not model constraints, infeasible trials penalized (see
    :attr:`Optimizer.handles_constraints`).

    Attributes
    ----------
    id : int
        The trial id (the history's ``trial`` coordinate).
    params : dict
        The configuration that ran.
    status : str
        ``"completed"``, ``"broken"``, ``"timeout"``, ``"lost"`` or ``"pruned"``.
    objective : float
        The minimized value (a maximized objective negated); NaN unless the trial
        completed (or was pruned with a value).  For an infeasible trial told to an
        algorithm that does not model constraints, the penalized value.
    metrics : mapping
        Every other numeric metric the objective returned (constraints and objective
        values have their own fields).
    parent : int, optional
        :attr:`Suggestion.parent` of the suggestion that started the trial.
    checkpoint : int, optional
        :attr:`Suggestion.checkpoint` of the suggestion that started the trial.
    last_step : float
        The last step the trial reported (NaN if it reported nothing); for a pruned trial,
        the step at which it stopped, and ``objective`` is the value it reported there.
    values : tuple of float
        In an experiment with several objectives, every objective's value, each to be
        minimized (a maximized one negated), in the experiment's order; ``objective`` is
        then NaN.  Empty for one objective.  Only algorithms whose class sets
        :attr:`Optimizer.multi_objective` are run on several objectives.
    constraints : tuple of float
        The constraint values the objective returned, as it returned them (feasible when
        every one is ``<= 0``, see :attr:`feasible`); empty for a trial without
        constraints.  An optimizer that models them declares
        :attr:`Optimizer.handles_constraints`.
    """

    id: int
    params: dict[str, Any]
    status: str
    objective: float = math.nan
    metrics: Mapping[str, float] = field(default_factory=dict)
    parent: int | None = None
    checkpoint: int | None = None
    last_step: float = math.nan
    values: tuple[float, ...] = ()
    constraints: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.constraints:
            # the keys optimizers read constraints from before they had their own field
            object.__setattr__(self, "metrics", _MetricsWithConstraints(self.metrics, self.constraints))

    @property
    def ok(self) -> bool:
        """Whether the trial completed with a finite objective (every one of :attr:`values`, if any)."""
        if self.values:
            return self.status == "completed" and all(math.isfinite(v) for v in self.values)
        return self.status == "completed" and math.isfinite(self.objective)

    @property
    def feasible(self) -> bool:
        """Whether every constraint is ``<= 0`` (so, true for a trial without constraints)."""
        return all(c <= 0 for c in self.constraints)


class _MetricsWithConstraints(dict):
    """A trial's metrics that still answer ``metrics["constraint_<i>"]`` and
    ``metrics["feasible"]``, with a :class:`DeprecationWarning` pointing to
    :attr:`Trial.constraints` and :attr:`Trial.feasible` (only those lookups: the keys are
    not among the metrics)."""

    def __init__(self, metrics: Mapping[str, float], constraints: tuple[float, ...]) -> None:
        super().__init__(metrics)
        self._constraints = tuple(constraints)

    def __missing__(self, key: str) -> float:
        if key == "feasible":
            value = float(all(c <= 0 for c in self._constraints))
        elif isinstance(key, str) and key.startswith("constraint_") and key[11:].isdigit() \
                and int(key[11:]) < len(self._constraints):
            value = self._constraints[int(key[11:])]
        else:
            raise KeyError(key)
        warnings.warn(f"trial.metrics[{key!r}] is deprecated: read trial.constraints (a tuple) and trial.feasible",
                      DeprecationWarning, stacklevel=2)
        return value

    def __reduce__(self) -> tuple[Any, ...]:
        return (_MetricsWithConstraints, (dict(self), self._constraints))


@dataclass(frozen=True)
class Report:
    """An intermediate result of a running trial, as optimizers see it.

    Attributes
    ----------
    trial_id : int
        The reporting trial.
    params : dict
        Its configuration.
    step : float
        The step (epoch, resource used so far) the values belong to.
    objective : float
        The reported value to minimize (NaN if the report had none).
    metrics : mapping
        Every other reported metric.
    """

    trial_id: int
    params: dict[str, Any]
    step: float
    objective: float = math.nan
    metrics: Mapping[str, float] = field(default_factory=dict)


class PendingTrials:
    """The trials an optimizer was asked for and has not yet been told of.

    Each pending trial carries what its optimizer keeps about it while it runs (``info``:
    the encoded point a constant liar lies about, a PBT member, ...), in ask order.  One
    instance, ``self._pending``, is created by :class:`Optimizer`; ``ask`` adds, ``tell``
    removes (:meth:`pop` is a no-op for a trial never asked for, as on resume).

    Examples
    --------
    >>> pending = PendingTrials()
    >>> pending.add(3, "point")
    >>> 3 in pending, len(pending), pending.pop(3), len(pending)
    (True, 1, 'point', 0)
    """

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[int, Any] = {}

    def add(self, trial_id: int, info: Any = None) -> None:
        """Record ``trial_id`` as pending, with ``info``."""
        self._items[int(trial_id)] = info

    def pop(self, trial_id: int, default: Any = None) -> Any:
        """Forget ``trial_id``; return its info (``default`` if it was not pending)."""
        return self._items.pop(int(trial_id), default)

    def get(self, trial_id: int, default: Any = None) -> Any:
        """The info of ``trial_id`` (``default`` if it is not pending)."""
        return self._items.get(int(trial_id), default)

    def values(self) -> list[Any]:
        """The infos of the pending trials, in ask order."""
        return list(self._items.values())

    def __contains__(self, trial_id: object) -> bool:
        return trial_id in self._items

    def __iter__(self) -> Iterator[int]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __repr__(self) -> str:
        return f"PendingTrials({list(self._items)})"


def option_error(algorithm: str, option: str, problem: str) -> ValueError:
    """The error for an invalid option, in the one message style of all optimizers.

    Parameters
    ----------
    algorithm : str
        The algorithm's registry name.
    option : str
        The option's name.
    problem : str
        What is wrong, e.g. ``"must be an integer >= 1, got 0"``.

    Returns
    -------
    ValueError
        With the message ``"<algorithm> option '<option>': <problem>"``.
    """
    return ValueError(f"{algorithm} option {option!r}: {problem}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def check_option(
    algorithm: str,
    option: str,
    value: Any,
    kind: str = "number",
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    choices: tuple[Any, ...] | list[Any] | None = None,
    optional: bool = False,
) -> Any:
    """Check one option of an optimizer; raise :func:`option_error` if it is invalid.

    Parameters
    ----------
    algorithm, option : str
        Named in the message.
    value
        The value given.
    kind : {"int", "number", "bool", "choice"}, default "number"
        ``"int"``: an integer (not a bool); ``"number"``: a finite real number (not a
        bool); ``"bool"``: ``True`` or ``False``; ``"choice"``: one of ``choices``.
    low, high : float, optional
        Bounds of an ``"int"`` or ``"number"`` option (inclusive unless ``low_open`` or
        ``high_open``).
    choices : sequence, optional
        The accepted values of a ``"choice"`` option.
    optional : bool, default False
        Accept ``None`` too.

    Returns
    -------
    object
        ``value``, unchanged.

    Raises
    ------
    ValueError
        ``"<algorithm> option '<option>': must be <requirement>, got <value>"``.

    Examples
    --------
    >>> check_option("tpe", "gamma", 0.1, low=0, high=1, low_open=True, high_open=True)
    0.1
    >>> check_option("tpe", "n_initial", 0, "int", low=1)
    Traceback (most recent call last):
    ...
    ValueError: tpe option 'n_initial': must be an integer >= 1, got 0
    """
    if optional and value is None:
        return value
    if kind == "bool":
        ok, need = isinstance(value, (bool, np.bool_)), "True or False"
    elif kind == "choice":
        ok, need = value in tuple(choices or ()), f"one of {list(choices or ())}"
    elif kind in ("int", "number"):
        need = "an integer" if kind == "int" else "a number"
        if kind == "int":
            ok = _is_number(value) and isinstance(value, (int, np.integer))
        else:
            ok = _is_number(value) and math.isfinite(value)
        if low is not None and high is not None:
            need += f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        elif low is not None:
            need += f" {'>' if low_open else '>='} {low}"
        elif high is not None:
            need += f" {'<' if high_open else '<='} {high}"
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value < high if high_open else value <= high
    else:
        raise ValueError(f"check_option: unknown kind {kind!r}")
    if not ok:
        raise option_error(algorithm, option, f"must be {need}{' or None' if optional else ''}, got {value!r}")
    return value


class Optimizer(ABC):
    """Base class of all search algorithms.

    Parameters
    ----------
    space : Space
        The search space.
    seed : int, optional
        Seed of every random choice the optimizer makes.

    Notes
    -----
    A subclass implements :meth:`ask` and :meth:`tell` (and optionally :meth:`report`
    and :attr:`config`), draws randomness from :meth:`rng_for`, keeps per-trial state in
    ``self._pending`` (``add`` in ``ask``, ``pop`` in ``tell``) and checks its options
    with :func:`check_option`.  :class:`daskhpo.testing.OptimizerConformance` checks the
    protocol.

    Examples
    --------
    >>> class Walk(Optimizer):
    ...     name = "walk"
    ...     def ask(self, trial_id):
    ...         self._pending.add(trial_id)
    ...         return Suggestion(self.space.sample(self.rng_for(trial_id)))
    ...     def tell(self, trial):
    ...         self._pending.pop(trial.id)
    >>> opt = Walk({"x": "uniform(0, 1)"}, seed=0)
    >>> s = opt.ask(0)
    >>> opt.pending
    (0,)
    >>> opt.tell(Trial(0, s.params, "lost"))
    >>> opt.pending
    ()
    """

    #: registry name; set by subclasses
    name: ClassVar[str] = ""
    #: whether the engine may run :meth:`fill` suggestions in slots that would otherwise
    #: wait for this optimizer's model (set by model-based algorithms: gp, tpe)
    fills_idle_slots: ClassVar[bool] = False
    #: ``True`` for an algorithm that models constraints itself: the experiment then tells it
    #: an infeasible trial's own objective, with :attr:`Trial.constraints`.  Otherwise (the
    #: default) an infeasible trial is told with a penalized objective, worse than every trial
    #: told before it, so that an algorithm that knows nothing of constraints avoids it.
    handles_constraints: ClassVar[bool] = False
    #: whether it searches several objectives at once (reads :attr:`Trial.values`); an
    #: experiment with ``objectives=`` refuses an algorithm that does not
    multi_objective: ClassVar[bool] = False

    def __init__(self, space: Space, seed: int | None = None) -> None:
        self.space = space if isinstance(space, Space) else Space(space)
        self.seed = int(np.random.SeedSequence().entropy % 2**32) if seed is None else int(seed)
        #: trials asked for and not yet told, with what the algorithm keeps about each
        self._pending = PendingTrials()

    def rng_for(self, trial_id: int, stream: str | None = None) -> np.random.Generator:
        """A generator that depends only on the seed, ``trial_id`` and ``stream``.

        Parameters
        ----------
        trial_id : int
            The trial the draws are for (or another integer key of the decision, such as
            the size of the history a model is fitted on).
        stream : str, optional
            Name of an independent stream, for a second kind of draw for the same trial
            (``"hyperband"`` for bracket choices while the sampler draws the
            configuration from the unnamed stream).  Hashed with :func:`zlib.crc32`, so
            it is the same in every process and Python version.

        Returns
        -------
        numpy.random.Generator
        """
        key = [self.seed, int(trial_id)]
        if stream is not None:
            key.append(zlib.crc32(stream.encode("utf-8")))
        return np.random.default_rng(key)

    @property
    def pending(self) -> tuple[int, ...]:
        """Ids of the trials asked for and not yet told that the optimizer holds state about.

        Read-only, in ask order.  Once every asked trial has been told (completed,
        broken, timed out, lost or pruned), it is empty: an optimizer must not keep
        pending state for trials that ended.  The default reads ``self._pending``
        (a :class:`PendingTrials`); an algorithm that keeps nothing per running trial
        (random search) reports none, and one that delegates (ASHA to its sampler)
        overrides it.
        """
        return tuple(getattr(self, "_pending", ()))

    @property
    def config(self) -> dict[str, Any]:
        """The algorithm's options (JSON-serializable), stored in the history's attrs."""
        return {}

    @abstractmethod
    def ask(self, trial_id: int) -> Suggestion | None:
        """Suggest the configuration of trial ``trial_id``, or ``None`` for nothing now."""

    @abstractmethod
    def tell(self, trial: Trial) -> None:
        """Learn the outcome of a finished trial."""

    def ask_batch(self, trial_ids: list[int]) -> list[Suggestion]:
        """Suggest several trials at once (the engine's model thread serves free slots so).

        The default asks for each in turn, stopping at the first ``None``; it returns the
        suggestions of a prefix of ``trial_ids``.  A model-based optimizer may override it
        to fit its model once for the whole batch (each suggestion still counting the
        previous ones as pending).  The result must be what the same calls of :meth:`ask`
        in order would decide, or at least as reproducible: a function of the seed, the
        ids and what the optimizer was told.
        """
        out = []
        for trial_id in trial_ids:
            suggestion = self.ask(trial_id)
            if suggestion is None:
                break
            out.append(suggestion)
        return out

    def fill(self, trial_id: int, incumbents: Sequence[Mapping[str, Any]] = ()) -> Suggestion:
        """A suggestion that costs nothing, for a slot that would otherwise wait for the model.

        Asked only of optimizers with :attr:`fills_idle_slots`, by the engine's loop
        thread *while the model thread may be inside* :meth:`ask_batch` or :meth:`tell`:
        so it must not read or change the optimizer's state.  The trial is not pending:
        the optimizer first hears of it when it is told, like a trial it never asked for.

        Parameters
        ----------
        trial_id : int
        incumbents : sequence of dict
            The best completed configurations so far, best first (from the history).

        Returns
        -------
        Suggestion
            The default (a function of the seed, ``trial_id`` and ``incumbents``): half
            of the time a draw from the prior, else one of the incumbents moved by a
            Gaussian step (sd 0.1 of each dimension's range, reflected at the bounds);
            always a prior draw in a conditional space.
        """
        rng = self.rng_for(trial_id, stream="fill")
        if not incumbents or self.space.conditional or rng.random() < 0.5:
            return Suggestion(self.space.sample(rng))
        point = self.space.to_unit(incumbents[rng.integers(len(incumbents))])
        point = np.abs(point + rng.normal(scale=0.1, size=point.shape))
        point = np.minimum(point, 2.0 - point).clip(0.0, 1.0)  # reflected into [0, 1]
        return Suggestion(self.space.from_unit(point))

    def needed_checkpoints(self) -> set[int] | None:
        """Trial ids whose checkpoints a future suggestion may start from.

        Read after each :meth:`tell`, for checkpoint retention (``keep_checkpoints=`` of
        :func:`daskhpo.build_experiment`): every other stored checkpoint may be deleted,
        unless a running trial starts from it.  The default, ``None``, means *unknown*:
        nothing is deleted.  An algorithm that never starts a trial from a checkpoint
        returns an empty set.
        """
        return None

    def report(self, report: Report) -> str:
        """Decide whether a running trial that reported ``report`` goes on.

        Returns
        -------
        str
            :data:`CONTINUE` (the default, for every algorithm that does not stop trials
            early) or :data:`PRUNE`.
        """
        return CONTINUE

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({opts})"
