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
particular optimizer.  Randomness comes only from ``self.rng_for(trial_id)`` or
generators seeded from ``self.seed``, so that the same seed and the same sequence of
results give the same suggestions, and a resumed run does not repeat earlier draws.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..space import Space

__all__ = ["Optimizer", "Suggestion", "Trial", "Report", "CONTINUE", "PRUNE"]

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
    """A finished trial, as optimizers see it.

    Attributes
    ----------
    id : int
        The trial id (the history's ``trial`` coordinate).
    params : dict
        The configuration that ran.
    status : str
        ``"completed"``, ``"broken"``, ``"timeout"``, ``"lost"`` or ``"pruned"``.
    objective : float
        The minimized value; NaN unless the trial completed (or was pruned with a value).
    metrics : mapping
        Every other numeric metric the objective returned.
    parent : int, optional
        :attr:`Suggestion.parent` of the suggestion that started the trial.
    checkpoint : int, optional
        :attr:`Suggestion.checkpoint` of the suggestion that started the trial.
    last_step : float
        The last step the trial reported (NaN if it reported nothing); for a pruned trial,
        the step at which it stopped, and ``objective`` is the value it reported there.
    """

    id: int
    params: dict[str, Any]
    status: str
    objective: float = math.nan
    metrics: Mapping[str, float] = field(default_factory=dict)
    parent: int | None = None
    checkpoint: int | None = None
    last_step: float = math.nan

    @property
    def ok(self) -> bool:
        """Whether the trial completed with a finite objective."""
        return self.status == "completed" and math.isfinite(self.objective)


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


class Optimizer(ABC):
    """Base class of all search algorithms.

    Parameters
    ----------
    space : Space
        The search space.
    seed : int, optional
        Seed of every random choice the optimizer makes.
    """

    #: registry name; set by subclasses
    name: ClassVar[str] = ""

    def __init__(self, space: Space, seed: int | None = None) -> None:
        self.space = space if isinstance(space, Space) else Space(space)
        self.seed = int(np.random.SeedSequence().entropy % 2**32) if seed is None else int(seed)

    def rng_for(self, trial_id: int) -> np.random.Generator:
        """A generator that depends only on the seed and ``trial_id``."""
        return np.random.default_rng([self.seed, trial_id])

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
