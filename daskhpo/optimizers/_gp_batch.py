"""A batch of GP suggestions from one candidate pool, each a fantasy for the next ones.

With ``pooled_batch``, :meth:`daskhpo.optimizers.gp.GP.ask_batch` serves ``k`` free slots
at once so (off by default: cheaper, but worse regret at 64 in flight).  Building the
posterior again for each suggestion (the pending ones as fantasies) costs a Cholesky
factorisation and a fresh candidate evaluation per suggestion; here the candidates are
evaluated once, and each pick is conditioned on by a rank-one update of the candidates'
posterior mean and variance (sequential conditioning of a Gaussian process):

``cov_t(a, b) = cov_{t-1}(a, b) - cov_{t-1}(a, x_t) cov_{t-1}(x_t, b) / (var_{t-1}(x_t) + noise)``

where ``cov_{t-1}(., x_t)`` is the prior-posterior covariance column minus the earlier
picks' rank-one terms: ``O(m (n + t))`` per pick for ``m`` candidates and ``n`` modelled
points, instead of ``O(n^2 m)``.  The fantasy's value is the lie: the posterior mean there
(kriging believer: the mean does not move, only the uncertainty shrinks, and a believed
improvement becomes the incumbent) or a constant, which moves the mean by the same update.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import linalg


def pick_batch(post: Any, points: np.ndarray, free: np.ndarray, best: float, lie: float | None, k: int,
               log_h: Any) -> list[int]:
    """Indices into ``points`` of up to ``k`` picks, each maximising log EI given the earlier ones.

    Parameters
    ----------
    post : gp._Posterior
        The posterior (completed trials and the pending fantasies).
    points : array (m, d)
        Valid candidates (rounded, encoded).
    free : bool array (m,)
        Candidates that may be picked (not a duplicate of a modelled or pending point).
    best : float
        The incumbent (standardised units).
    lie : float or None
        The fantasies' value; ``None``: the posterior mean at the pick (kriging believer).
    k : int
    log_h : callable
        ``log(z Phi(z) + phi(z))`` (the GP module's, accurate in the tail).

    Returns
    -------
    list of int
        Fewer than ``k`` when the free candidates run out.
    """
    free = free.copy()
    ks = post.kernel(points, post.x)  # (m, n)
    w = linalg.cho_solve(post.chol, ks.T)  # (n, m)
    mu = ks @ post.alpha
    var = np.maximum(post.amp - np.einsum("nm,mn->m", w, ks), 1e-12)
    columns: list[tuple[np.ndarray, float]] = []
    picks: list[int] = []
    for _ in range(k):
        if not free.any():
            break
        sd = np.sqrt(var)
        value = np.log(sd) + log_h((best - mu) / sd)
        value[~free] = -np.inf
        i = int(np.argmax(value))
        picks.append(i)
        # a rounded candidate may repeat: none is picked twice
        free &= ((points - points[i]) ** 2).sum(axis=1) > 1e-12 * points.shape[1]
        c = post.kernel(points, points[i : i + 1])[:, 0] - ks @ w[:, i]
        for cj, vj in columns:
            c -= cj * (cj[i] / vj)
        v = var[i] + post.noise + 1e-9
        told = mu[i] if lie is None else lie
        if lie is None:
            best = min(best, float(mu[i]))
        mu = mu + c * ((told - mu[i]) / v)
        var = np.maximum(var - c**2 / v, 1e-12)
        columns.append((c, v))
    return picks
