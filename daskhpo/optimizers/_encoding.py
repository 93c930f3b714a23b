"""Private helpers shared by the model-based optimizers: the space as arrays.

Numeric dimensions (``Real`` and ``Integer``) live in the unit interval given by their
``to_unit`` mapping, so the log scale of ``loguniform`` dimensions and the quantiles of
``normal`` ones come for free; categorical dimensions are choice indices; a fidelity
dimension is not searched (optimizers that do not manage fidelity use its maximum).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..space import Categorical, Fidelity, Integer, Space

# Integer dimensions with more values than this are modelled as continuous (no cell table).
_MAX_TABLE = 100_000


class _IntegerCells:
    """Unit-interval cells of an integer dimension: where each integer lives, and its width."""

    def __init__(self, dim: Integer) -> None:
        values = np.arange(dim.low, dim.high + 1)
        self.low = dim.low
        self.centers = np.array([dim.to_unit(int(v)) for v in values])
        self.lower = np.array([dim.to_unit(float(v) - 0.5) for v in values])
        self.upper = np.array([dim.to_unit(float(v) + 0.5) for v in values])
        self.lower[0], self.upper[-1] = 0.0, 1.0
        # from_unit picks the cell containing u; the cells tile [0, 1] in order.
        self._bounds = self.upper[:-1]

    def index(self, u: np.ndarray) -> np.ndarray:
        """Position (value - low) of the integer whose cell holds each ``u``."""
        return np.searchsorted(self._bounds, np.clip(u, 0.0, 1.0), side="left")


class Encoding:
    """The searched dimensions of a space, as numeric unit coordinates and choice indices.

    Parameters
    ----------
    space : Space
    """

    def __init__(self, space: Space) -> None:
        self.space = space
        self.num_names: list[str] = []
        self.cat_names: list[str] = []
        self.cat_sizes: list[int] = []
        self.cat_priors: list[np.ndarray] = []
        self.fidelity: Fidelity | None = None
        self.int_cells: dict[int, _IntegerCells] = {}
        for name, dim in space.items():
            if isinstance(dim, Fidelity):
                self.fidelity = dim
            elif isinstance(dim, Categorical):
                self.cat_names.append(name)
                self.cat_sizes.append(len(dim))
                self.cat_priors.append(np.asarray(dim.probabilities, dtype=float))
            else:
                if isinstance(dim, Integer) and dim.high - dim.low < _MAX_TABLE:
                    self.int_cells[len(self.num_names)] = _IntegerCells(dim)
                self.num_names.append(name)
        self.n_num = len(self.num_names)
        self.n_cat = len(self.cat_names)

    def encode(self, params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
        """Unit coordinates and choice indices of a configuration, or ``None`` if it is not in the space."""
        try:
            num = np.array([self.space[n].to_unit(params[n]) for n in self.num_names], dtype=float)
            cat = np.array(
                [self.space[n].index(params[n]) for n in self.cat_names], dtype=np.int64  # type: ignore[attr-defined]
            )
        except (KeyError, ValueError, TypeError, OverflowError):
            return None
        if not np.all(np.isfinite(num)):
            return None
        return np.clip(num, 0.0, 1.0), cat

    def snap(self, num: np.ndarray) -> np.ndarray:
        """Move integer coordinates of ``num`` (shape ``(..., n_num)``) to their values' points."""
        out = np.array(num, dtype=float, copy=True)
        for j, cells in self.int_cells.items():
            out[..., j] = cells.centers[cells.index(out[..., j])]
        return np.clip(out, 0.0, 1.0)

    def decode(self, num: np.ndarray, cat: np.ndarray) -> dict[str, Any]:
        """The configuration (plain Python values) of one encoded point."""
        values: dict[str, Any] = {}
        for name, u in zip(self.num_names, num):
            values[name] = self.space[name].from_unit(float(min(max(u, 0.0), 1.0)))
        for name, i in zip(self.cat_names, cat):
            values[name] = self.space[name].choices[int(i)]  # type: ignore[attr-defined]
        if self.fidelity is not None:
            values[self.fidelity.name] = self.fidelity.cast(self.fidelity.high)
        return {name: values[name] for name in self.space}

    def random(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        """``size`` draws from the priors, encoded."""
        num = rng.random((size, self.n_num))
        cat = np.empty((size, self.n_cat), dtype=np.int64)
        for j, p in enumerate(self.cat_priors):
            cat[:, j] = rng.choice(len(p), size=size, p=p)
        return self.snap(num), cat


def model_ready(n_done: int, n_pending: int, n_initial: int) -> bool:
    """Whether a model-based optimizer stops drawing at random.

    The first ``n_initial`` suggestions are random; in parallel runs the model starts once
    half of them have completed, instead of waiting for all of them.
    """
    return n_done + n_pending >= n_initial and n_done >= max(2, n_initial // 2)
