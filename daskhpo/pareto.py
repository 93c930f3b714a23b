"""Pareto dominance, non-dominated sorting, crowding distance and exact hypervolume.

Plain NumPy, for minimized objective vectors (rows of an ``(n, m)`` array): what
:attr:`daskhpo.Experiment.pareto_front`, the ``evolution`` algorithm's NSGA-II mode, the
plots and the benchmarks share.  This module imports nothing else from the package.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["non_dominated", "non_dominated_sort", "crowding_distance", "hypervolume"]


def _as_points(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    y = np.asarray(points, dtype=float)
    if y.ndim != 2:
        raise ValueError(f"points must be a 2-d array (one row per point), got shape {y.shape}")
    return y


def non_dominated(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Which points no other point dominates (all objectives minimized).

    ``a`` dominates ``b`` when ``a <= b`` in every objective and ``a < b`` in at least one;
    equal points do not dominate each other, so duplicates are all kept.

    Parameters
    ----------
    points : array of shape (n, m)

    Returns
    -------
    numpy.ndarray of bool, shape (n,)

    Examples
    --------
    >>> non_dominated([[1, 2], [2, 1], [2, 2], [1, 2]]).tolist()
    [True, True, False, True]
    """
    y = _as_points(points)
    if y.shape[1] == 2:
        return _non_dominated_2d(y)
    keep = np.ones(len(y), dtype=bool)
    for i in range(len(y)):
        # a row at a time keeps memory at O(n m) for large histories
        dominated_by = np.all(y <= y[i], axis=1) & np.any(y < y[i], axis=1)
        keep[i] = not dominated_by.any()
    return keep


def _non_dominated_2d(y: np.ndarray) -> np.ndarray:
    """:func:`non_dominated` of two objectives in O(n log n) (a history of 10,000 trials is instant).

    Sorted by (first, second), only points before a point can dominate it: one with a lower
    second objective, or one with a strictly lower first objective and no higher second one
    (an equal point is a duplicate, which does not dominate).
    """
    keep = np.ones(len(y), dtype=bool)
    if len(y) == 0:
        return keep
    order = np.lexsort((y[:, 1], y[:, 0]))
    first, second = y[order, 0], y[order, 1]
    running = np.minimum.accumulate(second)
    before = np.r_[np.inf, running[:-1]]  # lowest second objective of the points before
    start = np.searchsorted(first, first, side="left")  # where each point's value of `first` begins
    strictly_before = np.where(start > 0, running[np.maximum(start - 1, 0)], np.inf)
    keep[order] = ~((before < second) | (strictly_before <= second))
    return keep


def non_dominated_sort(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """The Pareto rank of each point: 0 for the non-dominated front, 1 for the next, ...

    Deb et al.'s fast non-dominated sort (NSGA-II), O(m n²).

    Parameters
    ----------
    points : array of shape (n, m)

    Returns
    -------
    numpy.ndarray of int, shape (n,)

    Examples
    --------
    >>> non_dominated_sort([[1, 3], [2, 2], [2, 3], [3, 3]]).tolist()
    [0, 0, 1, 2]
    """
    y = _as_points(points)
    n = len(y)
    if n == 0:
        return np.zeros(0, dtype=int)
    leq = np.all(y[:, None, :] <= y[None, :, :], axis=2)
    lt = np.any(y[:, None, :] < y[None, :, :], axis=2)
    dominates = leq & lt  # dominates[i, j]: i dominates j
    count = dominates.sum(axis=0)  # how many points dominate each one
    rank = np.full(n, -1, dtype=int)
    front = np.flatnonzero(count == 0)
    level = 0
    while front.size:
        rank[front] = level
        count = count - dominates[front].sum(axis=0)
        count[rank >= 0] = -1  # ranked points never enter a front again
        front = np.flatnonzero(count == 0)
        level += 1
    return rank


def crowding_distance(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """NSGA-II's crowding distance of each point within its set (larger: less crowded).

    The boundary points of each objective get infinity; the others the sum, over the
    objectives, of the gap between their neighbours divided by the objective's range.

    Parameters
    ----------
    points : array of shape (n, m)
        Usually one front.

    Returns
    -------
    numpy.ndarray of float, shape (n,)
    """
    y = _as_points(points)
    n, m = y.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(y[:, j], kind="stable")
        values = y[order, j]
        span = values[-1] - values[0]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span > 0:
            distance[order[1:-1]] += (values[2:] - values[:-2]) / span
    return distance


def hypervolume(points: np.ndarray | Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """The exact volume dominated by ``points`` and bounded by ``reference`` (minimized objectives).

    Points that do not strictly dominate the reference point add nothing.  Two objectives
    are a sweep over the points sorted by the first, O(n log n); more objectives are sliced
    along the last one into slabs, each the hypervolume of the points below it in one
    objective fewer (exact; O(n² log n) for three objectives, a second for a few thousand
    points; meant for fronts of hundreds of points beyond).

    Parameters
    ----------
    points : array of shape (n, m)
    reference : sequence of m floats

    Returns
    -------
    float

    Raises
    ------
    ValueError
        When the reference point's length is not the points' number of objectives.

    Examples
    --------
    >>> hypervolume([[1, 2], [2, 1]], [3, 3])
    3.0
    """
    y = _as_points(points)
    ref = np.asarray(reference, dtype=float)
    if y.size == 0:
        return 0.0
    if ref.shape != (y.shape[1],):
        raise ValueError(f"reference point has {ref.size} values, the points {y.shape[1]} objectives")
    y = y[np.all(y < ref, axis=1)]
    if len(y) == 0:
        return 0.0
    return float(_hv(y[non_dominated(y)], ref))


def _hv(y: np.ndarray, ref: np.ndarray) -> float:
    m = y.shape[1]
    if m == 1:
        return float(ref[0] - y[:, 0].min())
    if m == 2:
        # sorted by the first objective, each point adds the strip between its second
        # objective and the lowest one before it (dominated points add nothing)
        y = y[np.lexsort((y[:, 1], y[:, 0]))]
        before = np.minimum.accumulate(np.r_[ref[1], y[:-1, 1]])
        return float(np.sum((ref[0] - y[:, 0]) * np.maximum(before - y[:, 1], 0.0)))
    y = y[np.argsort(y[:, -1], kind="stable")]
    tops = np.r_[y[1:, -1], ref[-1]]
    volume = 0.0
    for i in range(len(y)):
        if tops[i] > y[i, -1]:  # the slab [y_i, next) is dominated by the first i + 1 points
            below = y[: i + 1, :-1]
            if m > 3:  # the recursion's cost grows fast with the points: drop dominated ones
                below = below[non_dominated(below)]
            volume += _hv(below, ref[:-1]) * (tops[i] - y[i, -1])
    return volume
