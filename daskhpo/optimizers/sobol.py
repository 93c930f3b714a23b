"""Quasi-random search: a scrambled Sobol' sequence (:class:`scipy.stats.qmc.Sobol`).

Trial ``i`` runs point ``i`` of one scrambled Sobol' sequence in the unit cube (one
coordinate per parameter), mapped to the space by each dimension's ``from_unit`` (log scale,
integer cells, categories, the quantiles of ``normal`` priors).  The points fill the cube
more evenly than independent draws, which helps most in short runs of a few dimensions.

The sequence is a function of the seed only (the scrambling) and a point of its index
only, so, as with ``random``, parallel trials need no bookkeeping and a resumed run
continues the sequence where it stopped.  In a conditional space each parameter keeps its
own coordinate and a suggestion holds only the parameters its choices activate (the others'
coordinates are drawn and dropped, as ``random`` draws and drops them).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..space import Fidelity, Space
from .base import Optimizer, Suggestion, Trial

__all__ = ["Sobol"]


class Sobol(Optimizer):
    """Scrambled Sobol' points, trial ``i`` taking point ``i`` of the seeded sequence.

    Parameters
    ----------
    space : Space
    seed : int, optional
        Seed of the scrambling (Owen's with a linear matrix scramble, scipy's default).

    Notes
    -----
    Registered as ``sobol`` and as ``qmc``.  The balance properties of a Sobol' sequence
    hold for the first ``2**m`` points; budgets that are powers of two use it best.  A
    fidelity dimension is not searched (it runs at its maximum).
    """

    name = "sobol"
    multi_objective = True  # it reads no objective at all

    def __init__(self, space: Space, seed: int | None = None) -> None:
        super().__init__(space, seed)
        self._names = [n for n, d in self.space.items() if not isinstance(d, Fidelity)]
        self._fidelity = next((d for d in self.space.values() if isinstance(d, Fidelity)), None)
        self._engine: Any = None
        self._next = 0  # index of the point the engine draws next

    def _point(self, index: int) -> np.ndarray:
        from scipy.stats import qmc

        if self._engine is None:
            self._engine = qmc.Sobol(max(len(self._names), 1), scramble=True, seed=np.random.default_rng(self.seed))
        if index != self._next:  # trials asked out of order (or a resume): jump there
            self._engine.reset()
            if index:  # scipy's fast_forward(0) after a reset fails (it steps n - 1)
                self._engine.fast_forward(index)
        with warnings.catch_warnings():  # "balance properties ... power of 2": documented above
            warnings.simplefilter("ignore", UserWarning)
            point = self._engine.random(1)[0]
        self._next = index + 1
        return point

    def ask(self, trial_id: int) -> Suggestion:
        """Point ``trial_id`` of the sequence, as a configuration."""
        point = self._point(int(trial_id))
        params = {name: self.space[name].from_unit(float(u)) for name, u in zip(self._names, point)}
        if self._fidelity is not None:
            params[self._fidelity.name] = self._fidelity.cast(self._fidelity.high)
        params = self.space.validate(params) if self.space.conditional else params
        return Suggestion({name: params[name] for name in self.space if name in params})

    def tell(self, trial: Trial) -> None:
        """Quasi-random search learns nothing from results."""


class QMC(Sobol):
    """``qmc``: another name of :class:`Sobol` (the registry checks that ``name`` is the name it was built by)."""

    name = "qmc"
