"""Asynchronous Hyperband: several ASHA brackets of different aggressiveness at once.

Bracket ``s`` (``s = 0 .. S``, ``S + 1`` = the number of rungs) starts its configurations at
the rung ``s``: bracket 0 is ASHA itself (most aggressive), bracket ``S`` runs every
configuration at ``max_resource`` (no early stopping).  Hyperband hedges between them
because how early one may judge depends on the problem.  Each new configuration goes to a
bracket drawn with probability proportional to the number of configurations Hyperband's
bracket would start, ``ceil((S + 1) / (S - s + 1) * eta**(S - s))``, so that every bracket
gets a similar share of the budget; draws depend only on the seed and the trial id.
Within a bracket, promotions and stops are ASHA's, asynchronous: no bracket or round ever
waits for another (unlike the synchronous Hyperband of Li et al. 2017 and dask-ml's
``HyperbandSearchCV``).  The options and both ways of spending resource (reports, or a
``fidelity`` dimension) are those of :class:`~daskhpo.optimizers.asha.ASHA`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..space import Space
from .asha import Bracket, SuccessiveHalving

__all__ = ["Hyperband"]


class Hyperband(SuccessiveHalving):
    """Asynchronous Hyperband (see the module documentation).

    Parameters
    ----------
    space : Space
    seed : int, optional
    min_resource, max_resource, reduction_factor : float, optional
        As for :class:`~daskhpo.optimizers.asha.ASHA`.
    sampler : str, (str, dict) or Optimizer, default "random"
        Where new configurations come from.
    """

    name = "hyperband"

    def __init__(
        self,
        space: Space,
        seed: int | None = None,
        min_resource: float | None = None,
        max_resource: float | None = None,
        reduction_factor: float | None = None,
        sampler: Any = "random",
    ) -> None:
        super().__init__(space, seed, min_resource, max_resource, reduction_factor, sampler)
        top = len(self.rungs) - 1
        eta = self.reduction_factor
        self.brackets = [Bracket(self.rungs[s:], eta) for s in range(top + 1)]
        sizes = np.array([math.ceil((top + 1) / (top - s + 1) * eta ** (top - s)) for s in range(top + 1)], dtype=float)
        self._weights = sizes / sizes.sum()

    def _bracket_for(self, trial_id: int) -> int:
        # A stream of its own: the sampler draws from rng_for(trial_id) too.
        rng = self.rng_for(trial_id, stream="hyperband")
        return int(rng.choice(len(self.brackets), p=self._weights))
