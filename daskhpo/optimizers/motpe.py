"""Multi-objective TPE, in the manner of Optuna's ``TPESampler`` with several objectives.

TPE (:mod:`daskhpo.optimizers.tpe`) with another split of the completed trials into the good
and the bad group (Ozaki et al. 2020, 2022, as Optuna implements it):

* the trials are sorted into Pareto fronts (non-dominated sorting); whole fronts join the
  good group while they fit in its size (``gamma`` of the trials, at most ``max_good``);
* the front that does not fit whole is cut by greedy hypervolume subset selection: one
  point at a time, the one that adds the most hypervolume to those already chosen;
* each good trial is weighted by its hypervolume contribution within the good group (its
  share of the volume no other good trial dominates), relative to the largest; dominated
  good trials get a tiny weight.  Points that hold a large, lonely part of the front so
  count most in the density ``l`` that candidates are drawn from.

Hypervolumes are computed on objectives scaled to ``[0, 1]`` over the completed trials, with
the reference point at 1.1 in each (Optuna uses the raw values and 1.1 times the worst): the
split does not depend on the objectives' units.  Everything else is TPE's: the joint Parzen
densities, running trials in the bad group (constant liar), conditional spaces, and the
constraints (feasible trials ranked first, then infeasible ones by total violation).
"""

from __future__ import annotations

import heapq
import logging
import math

import numpy as np

from ..pareto import hypervolume, non_dominated
from .base import Trial
from .tpe import TPE

__all__ = ["MOTPE"]

logger = logging.getLogger(__name__)

# weight of a dominated trial in the good group (Optuna's EPS)
_EPS = 1e-12


def _scaled(values: np.ndarray) -> np.ndarray:
    """Each objective scaled to [0, 1] over the rows (a constant one to 0)."""
    low, high = values.min(axis=0), values.max(axis=0)
    return (values - low) / np.where(high > low, high - low, 1.0)


def select_by_hypervolume(points: np.ndarray, k: int, reference: np.ndarray) -> np.ndarray:
    """Greedy hypervolume subset selection: indices of ``k`` of the (non-dominated) ``points``.

    Each step adds the point whose hypervolume together with those chosen is largest (ties:
    the lowest index).  Greedy selection reaches at least ``1 - 1/e`` of the best subset's
    hypervolume.  It is lazy: a point's gain only shrinks as points are chosen (hypervolume
    is submodular), so each step recomputes the gains of the most promising points only,
    from their bounds, until one is at least every other bound.

    Parameters
    ----------
    points : array of shape (n, m)
        Minimized objective vectors.
    k : int
        How many to choose (``0 <= k <= n``).
    reference : array of shape (m,)

    Returns
    -------
    numpy.ndarray of int
        The chosen rows, in the order chosen.
    """
    chosen: list[int] = []
    # bounds of each point's gain: at first its own box, exact for the empty set
    heap = [(-float(np.prod(np.clip(reference - p, 0.0, None))), i) for i, p in enumerate(points)]
    heapq.heapify(heap)
    fresh = {i: True for i in range(len(points))}  # whether the bound is the gain given ``chosen``
    volume = 0.0
    while len(chosen) < k and heap:
        bound, i = heapq.heappop(heap)
        if fresh[i]:
            chosen.append(i)
            volume = hypervolume(points[chosen], reference)
            fresh = dict.fromkeys(fresh, False)
            continue
        gain = hypervolume(points[chosen + [i]], reference) - volume
        fresh[i] = True
        heapq.heappush(heap, (-gain, i))
    return np.array(chosen, dtype=int)


def hypervolume_contributions(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The volume each point alone dominates within ``points``: HV(all) - HV(all but it)."""
    total = hypervolume(points, reference)
    keep = np.ones(len(points), dtype=bool)
    out = np.empty(len(points))
    for i in range(len(points)):
        keep[i] = False
        out[i] = total - hypervolume(points[keep], reference)
        keep[i] = True
    return out


def _dominator_counts(values: np.ndarray, chunk: int = 256) -> np.ndarray:
    """How many rows of ``values`` dominate each row (rows of the matrix a chunk at a time)."""
    counts = np.zeros(len(values), dtype=int)
    for start in range(0, len(values), chunk):
        block = values[start : start + chunk]  # the would-be dominators
        leq = np.all(block[:, None, :] <= values[None, :, :], axis=2)
        lt = np.any(block[:, None, :] < values[None, :, :], axis=2)
        counts += (leq & lt).sum(axis=0)
    return counts


class MOTPE(TPE):
    """Multi-objective TPE: TPE whose good group is chosen by Pareto rank and hypervolume.

    Parameters
    ----------
    space : Space
    seed : int, optional
    **options
        TPE's options (:class:`daskhpo.optimizers.tpe.TPE`): ``n_initial``, ``gamma``,
        ``max_good``, ``n_candidates``, ``bandwidth``, ``constant_liar``, ...

    Notes
    -----
    Reads :attr:`Trial.values`; a trial told without values (one objective) counts as a
    vector of one.  The split is computed once per history size (cached): the first fronts
    are peeled off one at a time until the good group is full (``O(n log n)`` each for two
    objectives, ``O(m n^2)`` for more), and the front that is cut costs a lazy greedy
    hypervolume selection (a few hypervolumes of at most ``max_good`` points per chosen one,
    typically; more when very many trials share that front).
    """

    name = "motpe"
    multi_objective = True

    def __init__(self, space, seed=None, **options) -> None:
        super().__init__(space, seed, **options)
        #: each modelled trial's objective vector (``_y`` holds a placeholder for TPE's bookkeeping)
        self._vectors: list[tuple[float, ...]] = []
        self._split_cache: tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]] | None = None

    def tell(self, trial: Trial) -> None:
        """Forget the trial as pending; model it if every objective is finite."""
        n = len(self._y)
        if trial.ok and not trial.values:  # one objective: a vector of one
            trial = Trial(trial.id, trial.params, trial.status, trial.objective, trial.metrics,
                          trial.parent, trial.checkpoint, trial.last_step, (float(trial.objective),))
        super().tell(Trial(trial.id, trial.params, trial.status, 0.0 if trial.ok else math.nan, trial.metrics,
                           trial.parent, trial.checkpoint, trial.last_step))
        if len(self._y) > n:  # TPE modelled it (its parameters are in the space)
            self._vectors.append(tuple(float(v) for v in trial.values))

    def _split(self, y: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Good group by Pareto fronts, the last one cut by hypervolume; weights by contribution."""
        n = len(y)
        if self._split_cache is not None and self._split_cache[0] == n:
            return self._split_cache[1]
        values = _scaled(np.asarray(self._vectors[:n], dtype=float))
        k = self.n_good(n)
        feasible = np.flatnonzero(v <= 0)
        infeasible = np.flatnonzero(v > 0)
        infeasible = infeasible[np.argsort(v[infeasible], kind="stable")]
        reference = np.full(values.shape[1], 1.1)
        good = self._good_by_fronts(values, feasible, min(k, len(feasible)), reference)
        good = np.concatenate([good, infeasible[: k - len(good)]]).astype(int)
        bad = np.setdiff1d(np.arange(n), good)
        weights = np.full(len(good), _EPS)
        if len(good):
            g = values[good]
            front = non_dominated(g)
            contributions = hypervolume_contributions(g[front], reference)
            top = contributions.max() if len(contributions) else 0.0
            weights[front] = np.maximum(contributions / top, _EPS) if top > 0 else 1.0
        self._split_cache = (n, (good, bad, weights))
        return good, bad, weights

    @staticmethod
    def _good_by_fronts(values: np.ndarray, rows: np.ndarray, k: int, reference: np.ndarray) -> np.ndarray:
        """``k`` of ``rows``: whole Pareto fronts, then a hypervolume selection from the next."""
        good: list[int] = []
        left = np.asarray(rows, dtype=int)
        if values.shape[1] > 2 and len(left) > 4 * k:
            # A trial dominated by k others is never needed: its dominators lie in earlier fronts,
            # which fill the good group first.  Counting them is vectorized, where peeling fronts
            # of three or more objectives is a loop over the trials.
            left = left[_dominator_counts(values[left]) < k]
        while len(good) < k and len(left):
            # peel one front at a time: only the first few are needed, not a full sort
            on_front = non_dominated(values[left])
            front, left = left[on_front], left[~on_front]
            if len(good) + len(front) <= k:
                good.extend(front.tolist())
                continue
            picked = select_by_hypervolume(values[front], k - len(good), reference)
            good.extend(front[picked].tolist())
        return np.array(good, dtype=int)
