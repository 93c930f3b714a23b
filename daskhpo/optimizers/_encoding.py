"""Private helpers shared by the model-based optimizers: the space as arrays.

Numeric dimensions (``Real`` and ``Integer``) live in the unit interval given by their
``to_unit`` mapping, so the log scale of ``loguniform`` dimensions and the quantiles of
``normal`` ones come for free; categorical dimensions are choice indices; a fidelity
dimension is not searched (optimizers that do not manage fidelity use its maximum).

In a conditional space (``when=``) a parameter that a configuration makes inactive is
encoded as NaN (numeric) or ``-1`` (categorical): "absent", never a value, so each model
decides how to treat it (TPE leaves it out of its kernels, the GP gives it a fixed
feature, evolution neither mutates it nor crosses it over).  Unconditional spaces never
see these markers and take the same code paths as before.
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
        #: whether any parameter is conditional (then :meth:`mask` applies ``when=``)
        self.conditional = space.conditional
        # The conditions as array lookups, parents before children (the space's order):
        # (is numeric, column, [(parent's cat column, allowed choice indices as a mask)]).
        self._conditions: list[tuple[bool, int, list[tuple[int, np.ndarray]]]] = []
        if self.conditional:
            for name in space.order:
                dim = space[name]
                if dim.when is None or isinstance(dim, Fidelity):
                    continue
                rules = []
                for parent, values in dim.when.items():
                    pdim = space[parent]
                    allowed = np.zeros(len(pdim), dtype=bool)  # type: ignore[arg-type]
                    allowed[[pdim.index(v) for v in values]] = True  # type: ignore[attr-defined]
                    rules.append((self.cat_names.index(parent), allowed))
                numeric = name in self.num_names
                column = self.num_names.index(name) if numeric else self.cat_names.index(name)
                self._conditions.append((numeric, column, rules))

    def encode(self, params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
        """Unit coordinates and choice indices of a configuration, or ``None`` if it is not in the space.

        In a conditional space, inactive parameters (given or not) are encoded as NaN / -1.
        """
        if self.conditional:
            return self._encode_conditional(params)
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

    def _encode_conditional(self, params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
        try:
            active = self.space.validate({n: v for n, v in params.items() if n in self.space})
        except ValueError:
            return None
        num = np.array([self.space[n].to_unit(active[n]) if n in active else np.nan for n in self.num_names],
                       dtype=float)
        cat = np.array([self.space[n].index(active[n]) if n in active else -1  # type: ignore[attr-defined]
                        for n in self.cat_names], dtype=np.int64)
        if np.isinf(num).any():
            return None
        return np.clip(num, 0.0, 1.0), cat

    def mask(self, num: np.ndarray, cat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mark the coordinates that each point's own choices make inactive (NaN / -1).

        ``num`` and ``cat`` have shapes ``(m, n_num)`` and ``(m, n_cat)``; copies are returned.
        A no-op (no copy) for an unconditional space.
        """
        if not self.conditional:
            return num, cat
        num, cat = np.array(num, dtype=float, copy=True), np.array(cat, dtype=np.int64, copy=True)
        for numeric, column, rules in self._conditions:
            active = np.ones(len(cat), dtype=bool)
            for parent, allowed in rules:
                values = cat[:, parent]
                # a parent that is itself inactive (-1) activates nothing: parents come first
                active &= (values >= 0) & allowed[np.maximum(values, 0)]
            if numeric:
                num[~active, column] = np.nan
            else:
                cat[~active, column] = -1
        return num, cat

    def complete(self, num: np.ndarray, cat: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw the coordinates a point's choices activate but it lacks, from their priors; mark the rest inactive.

        For one point (1-d ``num`` and ``cat``), e.g. a mutated one whose categorical parent
        changed.  The draws are made for every coordinate in a fixed order (and kept only
        where needed), so the generator is advanced the same way whatever the point.
        """
        fill_num = self.snap(rng.random(self.n_num))
        fill_cat = np.array([rng.choice(len(p), p=p) for p in self.cat_priors], dtype=np.int64)
        num = np.where(np.isnan(num), fill_num, num)
        cat = np.where(cat < 0, fill_cat, cat)
        num, cat = self.mask(num[None, :], cat[None, :])
        return num[0], cat[0]

    def snap(self, num: np.ndarray) -> np.ndarray:
        """Move integer coordinates of ``num`` (shape ``(..., n_num)``) to their values' points."""
        out = np.array(num, dtype=float, copy=True)
        for j, cells in self.int_cells.items():
            column = out[..., j]
            snapped = cells.centers[cells.index(column)]
            # an inactive coordinate (NaN) stays inactive
            out[..., j] = np.where(np.isnan(column), np.nan, snapped) if self.conditional else snapped
        return np.clip(out, 0.0, 1.0)

    def decode(self, num: np.ndarray, cat: np.ndarray) -> dict[str, Any]:
        """The configuration (plain Python values) of one encoded point."""
        values: dict[str, Any] = {}
        for name, u in zip(self.num_names, num):
            if u == u:  # NaN: inactive, left out
                values[name] = self.space[name].from_unit(float(min(max(u, 0.0), 1.0)))
        for name, i in zip(self.cat_names, cat):
            if i >= 0:  # -1: inactive, left out
                values[name] = self.space[name].choices[int(i)]  # type: ignore[attr-defined]
        if self.fidelity is not None:
            values[self.fidelity.name] = self.fidelity.cast(self.fidelity.high)
        return {name: values[name] for name in self.space if name in values}

    def random(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        """``size`` draws from the priors, encoded."""
        num = rng.random((size, self.n_num))
        cat = np.empty((size, self.n_cat), dtype=np.int64)
        for j, p in enumerate(self.cat_priors):
            cat[:, j] = rng.choice(len(p), size=size, p=p)
        return self.mask(self.snap(num), cat)


def complete_params(space: Space, params: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """``params`` with the parameters its values activate but it lacks drawn from their priors,
    and those its values make inactive left out (parents first, so conditions may nest)."""
    out = dict(params)
    for name in space.order:
        if space.is_active(name, out):
            if name not in out and not isinstance(space[name], Fidelity):  # the caller sets fidelity
                out[name] = space[name].sample(rng)
        else:
            out.pop(name, None)
    return {n: out[n] for n in space if n in out}


def model_ready(n_done: int, n_pending: int, n_initial: int) -> bool:
    """Whether a model-based optimizer stops drawing at random.

    The first ``n_initial`` suggestions are random; in parallel runs the model starts once
    half of them have completed, instead of waiting for all of them.
    """
    return n_done + n_pending >= n_initial and n_done >= max(2, n_initial // 2)
