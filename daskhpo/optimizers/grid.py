"""Grid search over evenly spaced values of every dimension.

In a conditional space the grid is a tree walk: each value of a categorical parent opens
the grid of the parameters it activates (and only those), so every branch is searched over
its own active dimensions and no configuration appears twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..space import Categorical, Dimension, Fidelity, Integer, Space
from .base import Optimizer, Suggestion, Trial, check_option, option_error

#: most points of a conditional grid (it is listed, unlike an unconditional one)
_MAX_TREE = 1_000_000


def grid_values(dim: Dimension, n_values: int) -> list[Any]:
    """The grid points of one dimension.

    Categorical dimensions use all their values, fidelity its maximum; real and integer
    dimensions use ``n_values`` points evenly spaced in the prior's scale (log for
    ``loguniform``, quantiles for ``normal``), bounds included.
    """
    if isinstance(dim, Categorical):
        return list(dim.choices)
    if isinstance(dim, Fidelity):
        return [dim.high]
    if dim.prior == "normal":
        units = (np.arange(n_values) + 0.5) / n_values
    else:
        units = np.linspace(0.0, 1.0, n_values) if n_values > 1 else np.array([0.5])
    values = [dim.from_unit(float(u)) for u in units]
    if isinstance(dim, Integer):
        values = sorted(set(values))
    return values


class GridSearch(Optimizer):
    """Visit the Cartesian product of per-dimension grids, in order.

    Parameters
    ----------
    space : Space
    seed : int, optional
        Unused (grid search is deterministic); accepted for a uniform signature.
    n_values : int or dict of str to int, default 5
        Points per real or integer dimension (a dict sets it per parameter).
    """

    name = "grid"

    def __init__(
        self, space: Space, seed: int | None = None, n_values: int | Mapping[str, int] = 5
    ) -> None:
        super().__init__(space, seed)
        per_dim = dict(n_values) if isinstance(n_values, Mapping) else {}
        unknown = set(per_dim) - set(self.space)
        if unknown:
            raise option_error("grid", "n_values", f"unknown parameter(s) {sorted(unknown)}")
        default = n_values if not isinstance(n_values, Mapping) else 5
        self._n_values = n_values
        self._axes: list[list[Any]] = []
        for name, dim in self.space.items():
            n = per_dim.get(name, default)
            check_option("grid", f"n_values[{name}]" if name in per_dim else "n_values", n, "int", low=1)
            self._axes.append(grid_values(dim, n))
        self.size = math.prod(len(axis) for axis in self._axes)
        # a conditional space's grid is listed (the tree has no mixed-radix numbering)
        self._points: list[dict[str, Any]] | None = None
        if self.space.conditional:
            self._points = self._tree()
            self.size = len(self._points)
        self._next = 0
        self._done: set[tuple[str, ...]] = set()
        # grid points asked for that ran with other parameters (the defaults as trial 0)
        self._returned: list[int] = []

    @property
    def config(self) -> dict[str, Any]:
        """The options, as given (stored in the history's attrs)."""
        n = self._n_values
        return {"n_values": dict(n) if isinstance(n, Mapping) else n}

    def _tree(self) -> list[dict[str, Any]]:
        """Every configuration of the conditional grid, in the space's order of variation."""
        axes = dict(zip(self.space, self._axes))
        partial: list[dict[str, Any]] = [{}]
        # parents before children, so a parameter's activity is known when it is reached
        for name in self.space.order:
            active = [self.space.is_active(name, params) for params in partial]
            # counted before it is built: a grid too large is refused at once
            if sum(len(axes[name]) if on else 1 for on in active) > _MAX_TREE:
                raise option_error("grid", "n_values", f"the conditional grid has more than {_MAX_TREE:,} points; "
                                   "use fewer values per dimension")
            grown = []
            for params, on in zip(partial, active):
                if on:
                    grown.extend({**params, name: value} for value in axes[name])
                else:
                    grown.append(params)
            partial = grown
        return [{n: p[n] for n in self.space if n in p} for p in partial]

    def _point(self, index: int) -> dict[str, Any]:
        if self._points is not None:
            return dict(self._points[index])
        # Mixed-radix decoding: the grid is never materialised.
        params = {}
        for name, axis in reversed(list(zip(self.space, self._axes))):
            index, i = divmod(index, len(axis))
            params[name] = axis[i]
        return {name: params[name] for name in self.space}

    def _key(self, params: Mapping[str, Any]) -> tuple[str, ...]:
        if self._points is None:
            return tuple(repr(params[name]) for name in self.space)
        # only the active parameters (a value given for an inactive one changes nothing)
        return tuple(repr(params[n]) if n in params and self.space.is_active(n, params) else "-"
                     for n in self.space)

    def ask(self, trial_id: int) -> Suggestion | None:
        """The next grid point not run yet (a point whose trial ran other parameters first)."""
        while self._returned:
            index = self._returned.pop(0)
            params = self._point(index)
            if self._key(params) not in self._done:
                self._pending.add(trial_id, index)
                return Suggestion(params)
        while self._next < self.size:
            params = self._point(self._next)
            self._next += 1
            if self._key(params) not in self._done:
                self._pending.add(trial_id, self._next - 1)
                return Suggestion(params)
        return None

    def tell(self, trial: Trial) -> None:
        """Mark the parameters that ran as visited, whatever the trial's status."""
        index = self._pending.pop(trial.id)
        key = self._key(trial.params)
        self._done.add(key)
        if index is not None and self._key(self._point(index)) != key:
            self._returned.append(index)  # the point asked for did not run: offer it again
