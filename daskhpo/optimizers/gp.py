"""Gaussian-process Bayesian optimization with log expected improvement.

The surrogate is scikit-learn's :class:`~sklearn.gaussian_process.GaussianProcessRegressor`
with a constant × Matérn-5/2 (one length scale per input) + white-noise kernel, whose
hyperparameters are fitted by maximising the log marginal likelihood.  Inputs are the unit
coordinates of real and integer dimensions (so log-scaled and normal priors are searched in
their natural scale) and a one-hot block per categorical dimension; outputs are standardised.

The acquisition, log expected improvement, is evaluated with its analytic gradient and
maximised by L-BFGS-B (scipy) from the best of many random and local candidates; integer
coordinates are then rounded to their values and one-hot blocks to their largest entry, and
the best rounded point wins.

Pending trials (asked, not yet told) enter the posterior with a lie for their value (by default
the posterior mean there, a *kriging believer*; a constant lie is an option), which removes the
uncertainty, hence most of the expected improvement, around them: parallel suggestions spread
out instead of piling onto one point.

Conditional spaces: a coordinate that a point's choices make inactive is given a fixed
feature value outside the unit interval (``-0.5``; an all-zero one-hot block for a
categorical), so the kernel sees every inactive value as the same and unlike any active
one; acquisition candidates are rounded to valid points, whose inactive coordinates are
reset to that value before they are compared.

Constraints (:attr:`Optimizer.handles_constraints`): each constraint value gets a GP of its
own (the same kernel, fitted on the same schedule) and the acquisition is log expected
improvement over the best *feasible* trial plus the log probability of feasibility,
``sum_k log P(c_k(x) <= 0)`` (Gardner et al., 2014); until a trial is feasible, the
probability of feasibility alone is maximised.

Bounded cost: with more than ``max_train`` completed trials the GP is fitted on a subset of
``max_train`` of them (the best half of that size, plus a seeded random sample of the rest),
so the cost of a suggestion stops growing with the history; the kernel is refitted on a
schedule that spaces fits out as the history grows (``refit_growth``); at most
``max_pending`` pending trials enter the posterior; and :meth:`GP.ask_batch` serves several
free slots with one model, refining only the first suggestion by L-BFGS-B.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import numpy as np
from scipy import linalg, optimize, special, stats

from ..space import Space
from ._encoding import Encoding, model_ready
from ._gp_batch import pick_batch
from .base import Optimizer, Suggestion, Trial, check_option

logger = logging.getLogger(__name__)

_SQRT5 = math.sqrt(5.0)
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_SQRT_HALF_PI = math.sqrt(math.pi / 2)
_LIARS = ("believer", "min", "mean", "max")
#: scheduled kernel fits per warm-started chain (the first of each starts from the default kernel)
_SEGMENT = 8
#: the feature of an inactive numeric coordinate (outside [0, 1]: unlike any active value)
_INACTIVE = -0.5


def log_h(z: np.ndarray) -> np.ndarray:
    """``log(z * Phi(z) + phi(z))``, the log of expected improvement in units of sigma.

    Accurate for very negative ``z``, where the naive formula underflows to ``-inf``.
    """
    z = np.asarray(z, dtype=float)
    out = np.empty_like(z)
    mid = z > -1.0
    zm = z[mid]
    out[mid] = np.log(zm * special.ndtr(zm) + np.exp(-0.5 * zm**2 - _LOG_SQRT_2PI))
    t = -z[~mid]
    log_phi = -0.5 * t**2 - _LOG_SQRT_2PI
    # h(-t) = phi(t) * (1 - t * Mills(t)), Mills(t) = sqrt(pi/2) erfcx(t / sqrt(2)).
    with np.errstate(divide="ignore", invalid="ignore"):
        tail = np.log1p(-t * _SQRT_HALF_PI * special.erfcx(t / math.sqrt(2)))
    tail = np.where((t > 1e3) | ~np.isfinite(tail), -2.0 * np.log(t), tail)
    out[~mid] = log_phi + tail
    return out


class _Posterior:
    """The GP posterior with fixed kernel hyperparameters, with gradients of mean and sd."""

    def __init__(
        self, x: np.ndarray, y: np.ndarray, amplitude: float, length: np.ndarray, noise: float
    ) -> None:
        self.x, self.amp, self.length, self.noise = x, amplitude, length, noise
        k = self.kernel(x, x)
        k[np.diag_indices_from(k)] += noise + 1e-9
        self.chol = linalg.cho_factor(k, lower=True)
        self.alpha = linalg.cho_solve(self.chol, y)

    def kernel(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        r = self._dist(a, b)
        return self.amp * (1 + _SQRT5 * r + 5.0 / 3.0 * r**2) * np.exp(-_SQRT5 * r)

    def _dist(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = a / self.length, b / self.length
        d2 = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
        return np.sqrt(np.maximum(d2, 0.0))

    def predict(self, a: np.ndarray, grad: bool = False):
        r = self._dist(a, self.x)
        e = np.exp(-_SQRT5 * r)
        ks = self.amp * (1 + _SQRT5 * r + 5.0 / 3.0 * r**2) * e  # (m, n)
        mu = ks @ self.alpha
        w = linalg.cho_solve(self.chol, ks.T)  # (n, m) = K^-1 k*
        var = np.maximum(self.amp - np.einsum("nm,mn->m", w, ks), 1e-12)
        sd = np.sqrt(var)
        if not grad:
            return mu, sd, None, None
        # d k(a, x_i) / d a = -5/3 amp (1 + sqrt5 r) exp(-sqrt5 r) (a - x_i) / length^2
        coef = -5.0 / 3.0 * self.amp * (1 + _SQRT5 * r) * e  # (m, n)
        diff = (a[:, None, :] - self.x[None, :, :]) / self.length**2  # (m, n, d)
        dk = coef[:, :, None] * diff
        dmu = np.einsum("mnd,n->md", dk, self.alpha)
        dvar = -2.0 * np.einsum("mnd,nm->md", dk, w)
        dsd = dvar / (2 * sd[:, None])
        return mu, sd, dmu, dsd


def _log_pof(cons: list[tuple[_Posterior, float]], a: np.ndarray, grad: bool = False):
    """``sum_k log P(c_k(a) <= threshold_k)`` under the constraints' GPs, and its gradient."""
    value = np.zeros(len(a))
    gradient = np.zeros(a.shape) if grad else None
    for post, threshold in cons:
        mu, sd, dmu, dsd = post.predict(a, grad)
        z = (threshold - mu) / sd
        log_cdf = special.log_ndtr(z)
        value += log_cdf
        if grad:
            ratio = np.exp(-0.5 * z**2 - _LOG_SQRT_2PI - log_cdf)  # d log Phi / dz
            gradient += ratio[:, None] * (-dmu - z[:, None] * dsd) / sd[:, None]
    return value, gradient


def _acquisition(post: _Posterior, cons: list[tuple[_Posterior, float]], a: np.ndarray, best: float | None,
                 grad: bool = False):
    """Log EI (``best`` ``None``: none, no feasible trial yet) plus the log probability of feasibility."""
    if not cons:
        return _log_ei(post, a, best, grad)  # type: ignore[arg-type]
    value, gradient = _log_pof(cons, a, grad)
    if best is not None:
        ei, ei_grad = _log_ei(post, a, best, grad)
        value = value + ei
        if grad:
            gradient = gradient + ei_grad
    return value, gradient


def _log_ei(post: _Posterior, a: np.ndarray, best: float, grad: bool = False):
    mu, sd, dmu, dsd = post.predict(a, grad)
    z = (best - mu) / sd
    value = np.log(sd) + log_h(z)
    if not grad:
        return value, None
    # d log h / dz = Phi(z) / h(z)
    ratio = np.exp(special.log_ndtr(z) - log_h(z))
    dz = (-dmu - z[:, None] * dsd) / sd[:, None]
    return value, dsd / sd[:, None] + ratio[:, None] * dz


class GP(Optimizer):
    """Gaussian-process Bayesian optimization (Matérn-5/2 kernel, log expected improvement).

    Parameters
    ----------
    space : Space
    seed : int, optional
    n_initial : int, default 20
        Suggestions drawn at random from the priors before the GP is used (in parallel runs
        the GP starts once half of them have completed).
    max_train : int, default 150
        Most completed trials the GP is conditioned on; beyond it, the best ``max_train // 2``
        plus a seeded random sample of the others (this bounds the suggestion time).
    fit_max : int, default 64
        Most completed trials the kernel hyperparameters are fitted on (chosen by the same
        rule): the marginal-likelihood fit costs ``O(n^3)`` per iteration and dominated the
        suggestion time (about 5x less at 64 than at 150 trials here).
    n_candidates : int, default 1000
        Random and local candidates on which the acquisition is evaluated.
    n_starts : int, default 5
        Best candidates from which L-BFGS-B maximises the acquisition.
    fit_restarts : int, default 0
        Extra random restarts of the marginal-likelihood fit.
    refit_every : int, default 1
        Refit the kernel hyperparameters when at least this many new trials have completed
        since the last fit (the posterior always uses every trial).
    refit_growth : float, default 0.1
        ... and when the history has grown by at least this fraction since the last fit:
        fits happen at ``p_0 = n_initial``, ``p_{k+1} = p_k + max(refit_every,
        floor(refit_growth * p_k))`` completed trials (20, 22, 24, 26, 28, 30, 33, ...,
        every 100th around 1,000), so the cost of fitting per suggestion falls as the
        history grows.
        The fit is a function of the history only (its first ``p_k`` trials), so runs stay
        reproducible and resumable.  ``0`` refits every ``refit_every`` trials.
    constant_liar : bool, default True
        Put pending trials into the posterior with a lie for their value.
    max_pending : int, default 100
        Most pending trials put into the posterior (the most recently asked ones), which
        bounds its size with a thousand trials in flight.
    liar : {"believer", "min", "mean", "max"}, default "believer"
        The lie: the posterior mean at the pending point ("kriging believer": it removes the
        uncertainty there without inventing good or bad regions, and a believed improvement
        becomes the incumbent of the expected improvement), or the best, mean or worst
        completed value (a constant liar).
    refine_pending : int, default 32
        A suggestion is refined by L-BFGS-B only while fewer than this many trials are
        pending; with more, it is the best of a quarter of ``n_candidates`` (as in a batch).
        With many trials in flight each suggestion is one of many exploring at once, and the
        model must keep up with the results: at 64 slots x 1 s, refined suggestions (about
        50 ms at 1,000 trials) made the model thread the bottleneck, and the slots waited.
    pooled_batch : bool, default False
        Serve a batch (:meth:`ask_batch`) from one candidate pool, each pick conditioned on
        the earlier ones by rank-one updates of the candidates' posterior: about 1 ms of CPU
        a suggestion at 1,000 trials instead of 5, but at 64 in flight (batches of 8, 5
        seeds, 200 trials) its median regret was worse on all five problems of
        ``benchmarks/optimizers.py`` (up to 30x on the mixed space), so it is off.
    output_warping : bool, default False
        Model Yeo-Johnson-transformed objectives (the power fitted by maximum likelihood on
        each fit's data, as HEBO does), which helps when a few values are far worse than
        the rest.

    Notes
    -----
    The kernel is ``C * Matern(nu=2.5, one length scale per input) + White``; outputs are
    standardised (zero mean, unit variance) before fitting.  Trials that did not complete
    are not modelled.
    """

    name = "gp"
    fills_idle_slots = True
    handles_constraints = True

    def __init__(
        self,
        space: Space,
        seed: int | None = None,
        n_initial: int = 20,
        max_train: int = 150,
        n_candidates: int = 1000,
        n_starts: int = 5,
        fit_restarts: int = 0,
        refit_every: int = 1,
        refit_growth: float = 0.1,
        fit_max: int = 64,
        constant_liar: bool = True,
        liar: str = "believer",
        max_pending: int = 100,
        output_warping: bool = False,
        refine_pending: int = 32,
        pooled_batch: bool = False,
    ) -> None:
        super().__init__(space, seed)
        check_option("gp", "n_initial", n_initial, "int", low=1)
        check_option("gp", "max_train", max_train, "int", low=2)
        check_option("gp", "n_candidates", n_candidates, "int", low=1)
        check_option("gp", "n_starts", n_starts, "int", low=1)
        check_option("gp", "fit_restarts", fit_restarts, "int", low=0)
        check_option("gp", "refit_every", refit_every, "int", low=1)
        check_option("gp", "refit_growth", refit_growth, low=0)
        check_option("gp", "fit_max", fit_max, "int", low=2)
        self.fit_max = fit_max
        check_option("gp", "max_pending", max_pending, "int", low=0)
        self.max_pending = max_pending
        check_option("gp", "refine_pending", refine_pending, "int", low=0)
        self.refine_pending = refine_pending
        check_option("gp", "pooled_batch", pooled_batch, "bool")
        self.pooled_batch = pooled_batch
        check_option("gp", "output_warping", output_warping, "bool")
        self.output_warping = output_warping
        self.refit_growth = float(refit_growth)
        check_option("gp", "constant_liar", constant_liar, "bool")
        check_option("gp", "liar", liar, "choice", choices=_LIARS)
        self.n_initial = n_initial
        self.max_train = max_train
        self.n_candidates = n_candidates
        self.n_starts = n_starts
        self.fit_restarts = fit_restarts
        self.refit_every = refit_every
        self._fitted: tuple[int, tuple[float, np.ndarray, float]] | None = None
        self.constant_liar = constant_liar
        self.liar = liar
        self._enc = Encoding(self.space)
        # one-hot layout: slices of the feature vector holding each categorical dimension
        self._blocks: list[slice] = []
        start = self._enc.n_num
        for size in self._enc.cat_sizes:
            self._blocks.append(slice(start, start + size))
            start += size
        self._dim = start
        self._x: list[np.ndarray] = []
        self._y: list[float] = []
        self._xa, self._ya = np.zeros((0, self._dim)), np.zeros(0)
        #: each modelled trial's constraint values (empty tuples in an unconstrained run)
        self._c: list[tuple[float, ...]] = []
        self._n_constraints = 0
        # per constraint: (history size of the fit, kernel hyperparameters)
        self._fitted_c: dict[int, tuple[int, tuple[float, np.ndarray, float]]] = {}
        #: number of trials the last fit used (for inspection and tests)
        self.last_train_size = 0

    @property
    def config(self) -> dict[str, Any]:
        """The options, as given (stored in the history's attrs)."""
        return {
            "n_initial": self.n_initial,
            "max_train": self.max_train,
            "n_candidates": self.n_candidates,
            "n_starts": self.n_starts,
            "fit_restarts": self.fit_restarts,
            "refit_every": self.refit_every,
            "refit_growth": self.refit_growth,
            "fit_max": self.fit_max,
            "constant_liar": self.constant_liar,
            "liar": self.liar,
            "max_pending": self.max_pending,
            "output_warping": self.output_warping,
            "refine_pending": self.refine_pending,
            "pooled_batch": self.pooled_batch,
        }

    # -- encoding --------------------------------------------------------------------------
    def _features(self, num: np.ndarray, cat: np.ndarray) -> np.ndarray:
        x = np.zeros((len(num), self._dim))
        if self._enc.conditional:
            num = np.where(np.isnan(num), _INACTIVE, num)
            rows = np.arange(len(num))
            for j, block in enumerate(self._blocks):
                on = cat[:, j] >= 0  # an inactive categorical: an all-zero block
                x[rows[on], block.start + cat[on, j]] = 1.0
            x[:, : self._enc.n_num] = num
            return x
        x[:, : self._enc.n_num] = num
        for j, block in enumerate(self._blocks):
            x[np.arange(len(num)), block.start + cat[:, j]] = 1.0
        return x

    def _round(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        num = self._enc.snap(np.clip(x[:, : self._enc.n_num], 0.0, 1.0))
        cat = np.stack([np.argmax(x[:, b], axis=1) for b in self._blocks], axis=1) if self._blocks else (
            np.zeros((len(x), 0), dtype=np.int64)
        )
        return self._enc.mask(num, cat)

    # -- protocol --------------------------------------------------------------------------
    def ask(self, trial_id: int) -> Suggestion:
        """Suggest trial ``trial_id``: a prior draw at first, then the maximum of log EI."""
        return self._ask(trial_id, refine=len(self._pending) < self.refine_pending)

    def ask_batch(self, trial_ids: list[int]) -> list[Suggestion]:
        """Suggest several trials with one model: the kernel fit is shared and each suggestion
        is a fantasy (pending point) for the next ones.  A batch of one is :meth:`ask`.

        In a larger batch (slots are waiting) nothing is refined by L-BFGS-B: each
        suggestion is the best of its own ``n_candidates // 4`` random and local candidates
        under the fantasies.  With ``pooled_batch``, the candidates (as many, at most
        ``n_candidates``) are evaluated once and each pick is the best of them given the
        earlier picks, by rank-one updates (:mod:`daskhpo.optimizers._gp_batch`).
        """
        if len(trial_ids) == 1:
            return [self.ask(trial_ids[0])]
        ids = list(trial_ids)
        out = []
        while ids and not model_ready(len(self._y), len(self._pending), self.n_initial):
            out.append(self._ask(ids.pop(0), refine=False))  # prior draws until the model starts
        if not ids:
            return out
        if not self.pooled_batch or self._n_constraints or not (self.constant_liar and self.max_pending):
            return out + [self._ask(trial_id, refine=False) for trial_id in ids]
        return out + self._ask_pooled(ids)

    def _ask_pooled(self, ids: list[int]) -> list[Suggestion]:
        rng = self.rng_for(ids[0], stream="gp-batch")
        post, _, best, length, lie = self._model()
        xa, ya = self._arrays()
        count = min(self.n_candidates, max(64, self.n_candidates // 4) * len(ids))
        num, cat = self._round(self._candidates(rng, xa[np.argsort(ya, kind="stable")[:5]], length, count))
        points = self._features(num, cat)
        # not a duplicate of a modelled or pending point (squared distances by one product)
        d2 = (points**2).sum(1)[:, None] + (post.x**2).sum(1)[None, :] - 2 * points @ post.x.T
        free = d2.min(axis=1) > 1e-12 * points.shape[1]
        picks = pick_batch(post, points, free, float(best), lie, len(ids), log_h)  # type: ignore[arg-type]
        out = []
        for trial_id, i in zip(ids, picks):
            self._pending.add(trial_id, points[i])
            out.append(Suggestion(self._enc.decode(num[i], cat[i])))
        # the pool ran out (a small discrete space): each of the others on its own
        return out + [self._ask(trial_id, refine=False) for trial_id in ids[len(picks) :]]

    def _ask(self, trial_id: int, refine: bool) -> Suggestion:
        rng = self.rng_for(trial_id)
        n = len(self._y)
        if not model_ready(n, len(self._pending), self.n_initial):
            num, cat = self._enc.random(rng, 1)
            x = self._features(num, cat)[0]
        else:
            x = self._suggest(rng, refine)
            num, cat = self._round(x[None, :])
        self._pending.add(trial_id, x)
        return Suggestion(self._enc.decode(num[0], cat[0]))

    def tell(self, trial: Trial) -> None:
        """Forget the trial as pending; model it if it completed with a finite objective."""
        self._pending.pop(trial.id, None)
        if not trial.ok:
            return
        encoded = self._enc.encode(trial.params)
        if encoded is None:
            logger.warning("gp: trial %s has parameters outside the space; ignored", trial.id)
            return
        self._x.append(self._features(encoded[0][None, :], encoded[1][None, :])[0])
        self._y.append(float(trial.objective))
        constraints = trial.constraints
        self._c.append(constraints)
        self._n_constraints = max(self._n_constraints, len(constraints))

    # -- model -----------------------------------------------------------------------------
    def training_set(self, n: int | None = None, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The inputs and outputs of the first ``n`` (default all) completed trials that the GP
        is conditioned on: at most ``limit`` (default ``max_train``) of them."""
        n = len(self._y) if n is None else n
        keep = self._train_index(n, self.max_train if limit is None else limit)
        xa, ya = self._arrays()
        x, y = xa[:n], ya[:n]
        return (x, y) if keep is None else (x[keep], y[keep])

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The modelled trials' features and objectives as arrays, extended (not rebuilt:
        at thousands of trials the rebuild was a tenth of a batch's time) as trials arrive."""
        have = len(self._xa)
        if have != len(self._y):
            new = np.asarray(self._x[have:]).reshape(-1, self._dim)
            self._xa = np.concatenate([self._xa, new])
            self._ya = np.concatenate([self._ya, np.asarray(self._y[have:], dtype=float)])
        return self._xa, self._ya

    def _train_index(self, n: int, limit: int) -> np.ndarray | None:
        """Which of the first ``n`` trials the GP is conditioned on (``None``: all)."""
        if n <= limit:
            return None
        y = self._arrays()[1][:n]
        if self._n_constraints:
            # the best: feasible first by objective, then the least violating
            order = np.lexsort((y, self._violations(n)))
        else:
            order = np.argsort(y, kind="stable")
        n_best = limit // 2
        rest = self.rng_for(n, stream="gp-train-subset").choice(order[n_best:], limit - n_best, replace=False)
        return np.sort(np.concatenate([order[:n_best], rest]))

    def _constraint_matrix(self, n: int) -> np.ndarray:
        """The first ``n`` trials' constraint values, ``(n, n_constraints)``; NaN where one lacks them."""
        out = np.full((n, self._n_constraints), np.nan)
        for i, values in enumerate(self._c[:n]):
            out[i, : len(values)] = values
        return out

    def _violations(self, n: int) -> np.ndarray:
        return np.nansum(np.maximum(self._constraint_matrix(n), 0.0), axis=1)

    def _constraint_models(self) -> list[tuple[_Posterior, float]]:
        """One posterior per constraint, with the threshold 0 in its standardized units."""
        n = len(self._y)
        keep = self._train_index(n, self.max_train)
        x = self._arrays()[0]
        values = self._constraint_matrix(n)
        if keep is not None:
            x, values = x[keep], values[keep]
        n_fit = self._refit_point(n)
        fit_keep = self._train_index(n_fit, self._fit_limit)
        fit_x, fit_values = self._arrays()[0][:n_fit], self._constraint_matrix(n_fit)
        if fit_keep is not None:
            fit_x, fit_values = fit_x[fit_keep], fit_values[fit_keep]
        models = []
        for k in range(self._n_constraints):
            known = ~np.isnan(values[:, k])
            fit_known = ~np.isnan(fit_values[:, k])
            if known.sum() < 2 or fit_known.sum() < 2:
                continue
            fitted = self._fitted_c.get(k)
            if fitted is None or fitted[0] != n_fit:
                params = self._fit(fit_x[fit_known], _standardize(fit_values[fit_known, k])[0], n_fit)
                fitted = self._fitted_c[k] = (n_fit, params)
            amplitude, length, noise = fitted[1]
            cs, mean, std = _standardize(values[known, k])
            models.append((_Posterior(x[known], cs, amplitude, length, noise), (0.0 - mean) / std))
        return models

    def hyperparameters(self) -> tuple[float, np.ndarray, float]:
        """Amplitude, length scales and noise of the kernel (refitted every ``refit_every`` trials)."""
        n_fit = self._refit_point(len(self._y))
        if self._fitted is None or self._fitted[0] != n_fit:
            start = None
            chain = self._fit_chain(n_fit)
            if self._fitted is not None and self._fitted[0] in chain[:-1]:
                start = self._fitted[1]
                chain = chain[chain.index(self._fitted[0]) + 1 :]
            for point in chain:
                x, y = self.training_set(point, self._fit_limit)
                start = self._fit(x, self._targets(y), point, start)
                self._fitted = (point, start)
        return self._fitted[1]

    @property
    def _fit_limit(self) -> int:
        return min(self.fit_max, self.max_train)

    def _fit_chain(self, n_fit: int) -> list[int]:
        """The fits leading to the one at ``n_fit``: the first from the default kernel, each
        next warm-started from the one before (a few L-BFGS-B steps instead of tens).

        Warm starts begin once fits see ``fit_max`` trials (before, the data change too
        fast between fits); a new cold fit every ``_SEGMENT`` scheduled fits bounds the
        chain.  A function of the history only: a resumed optimizer runs the fits it
        missed (at most ``_SEGMENT``) and reaches the same hyperparameters.
        """
        if n_fit < max(self._fit_limit, self.n_initial):
            return [n_fit]
        warm = [p for p in self._schedule(n_fit) if p >= self._fit_limit]
        last = len(warm) - 1
        return warm[last - last % _SEGMENT :]

    def _schedule(self, n: int) -> list[int]:
        """The history sizes (``>= n_initial``, ``<= n``) at which the kernel is refitted."""
        points = [self.n_initial]
        while True:
            following = points[-1] + max(self.refit_every, int(self.refit_growth * points[-1]))
            if following > n:
                return points
            points.append(following)

    def _targets(self, y: np.ndarray) -> np.ndarray:
        """What the GP models: standardised objectives (Yeo-Johnson-warped first, with
        ``output_warping``, so that a few very bad values do not flatten the rest)."""
        ys = _standardize(y)[0]
        if self.output_warping and len(ys) > 2 and np.ptp(ys) > 0:
            ys = _standardize(stats.yeojohnson(ys)[0])[0]
        return ys

    def _refit_point(self, n: int) -> int:
        """The history size of the last scheduled fit at ``n`` completed trials."""
        return n if n < self.n_initial else self._schedule(n)[-1]

    def _fit(
        self, x: np.ndarray, y: np.ndarray, n: int, start: tuple[float, np.ndarray, float] | None = None
    ) -> tuple[float, np.ndarray, float]:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        amplitude, length, noise = (1.0, np.full(self._dim, 0.5), 1e-4) if start is None else start
        kernel = ConstantKernel(amplitude, (1e-2, 1e2)) * Matern(
            length_scale=length, length_scale_bounds=(1e-2, 20.0), nu=2.5
        ) + WhiteKernel(noise, (1e-6, 1e-1))
        state = np.random.RandomState(self.rng_for(n, stream="gp-fit").integers(2**31))
        model = GaussianProcessRegressor(
            kernel, alpha=1e-10, normalize_y=False, n_restarts_optimizer=self.fit_restarts, random_state=state
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x, y)
        fitted = model.kernel_
        amplitude = float(fitted.k1.k1.constant_value)
        length = np.asarray(fitted.k1.k2.length_scale, dtype=float).reshape(-1) * np.ones(self._dim)
        noise = float(fitted.k2.noise_level)
        return amplitude, length, noise

    def _model(self) -> tuple[_Posterior, list[tuple[_Posterior, float]], float | None, np.ndarray, float | None]:
        """The posterior (pending trials in it as fantasies), the constraints' models, the
        incumbent, the length scales, and the lie for the next fantasies (``None``: the
        believer's posterior mean)."""
        amplitude, length, noise = self.hyperparameters()
        x, y = self.training_set()
        self.last_train_size = len(y)
        ys = self._targets(y)
        cons = self._constraint_models() if self._n_constraints else []
        best: float | None = float(ys.min())
        if cons:
            keep = self._train_index(len(self._y), self.max_train)
            feasible = self._violations(len(self._y)) <= 0
            feasible = feasible if keep is None else feasible[keep]
            best = float(ys[feasible].min()) if feasible.any() else None
        post = _Posterior(x, ys, amplitude, length, noise)
        if self.constant_liar and self._pending and self.max_pending:
            pending = np.array(self._pending.values()[-self.max_pending :])
            if self.liar == "believer":
                lies = post.predict(pending)[0]
                # the fantasies count as data, for the incumbent too: otherwise a pending point
                # predicted to improve keeps its expected improvement and is suggested again
                if best is not None:
                    best = min(best, float(lies.min()))
            else:
                lies = np.full(len(pending), self._lie(ys, best))
            x = np.concatenate([x, pending])
            ys = np.concatenate([ys, lies])
            post = _Posterior(x, ys, amplitude, length, noise)
        return post, cons, best, length, self._lie(ys, best)

    def _lie(self, ys: np.ndarray, best: float | None) -> float | None:
        """The constant liar's value in the GP's units (``None``: the believer's posterior mean)."""
        if self.liar == "believer":
            return None
        lie_min = float(ys.min()) if best is None else best
        return {"min": lie_min, "mean": float(ys.mean()), "max": float(ys.max())}[self.liar]

    def _suggest(self, rng: np.random.Generator, refine: bool = True) -> np.ndarray:
        post, cons, best, length, _ = self._model()
        x = post.x
        # a batch's unrefined suggestions look at a quarter of the candidates (cost ~ candidates x trials)
        count = self.n_candidates if refine else max(64, self.n_candidates // 4)
        xa, ya = self._arrays()
        cands = self._candidates(rng, xa[np.argsort(ya, kind="stable")[:5]], length, count)
        if refine:
            values, _ = _acquisition(post, cons, cands, best)
            starts = cands[np.argsort(-values, kind="stable")[: self.n_starts]]
            optimized = self._maximize(post, cons, best, starts)
            # Round to valid points, and keep the best rounded one not already taken.
            num, cat = self._round(np.concatenate([optimized, starts, cands]))
        else:  # later suggestions of a batch: the best valid candidate, one evaluation
            num, cat = self._round(cands)
        points = self._features(num, cat)
        values, _ = _acquisition(post, cons, points, best)
        taken = x
        for i in np.argsort(-values, kind="stable"):
            if np.min(np.abs(points[i] - taken).max(axis=1)) > 1e-6:
                return points[i]
        num, cat = self._enc.random(rng, 1)
        return self._features(num, cat)[0]

    def _candidates(
        self, rng: np.random.Generator, best_x: np.ndarray, length: np.ndarray, count: int | None = None
    ) -> np.ndarray:
        count = self.n_candidates if count is None else count
        n_local = count // 2
        num, cat = self._enc.random(rng, count - n_local)
        uniform = self._features(num, cat)
        # Local moves around the best points, at a few scales relative to the length scales.
        centers = best_x[rng.integers(len(best_x), size=n_local)]
        scale = np.minimum(length, 1.0) * rng.choice([0.01, 0.05, 0.2], size=(n_local, 1))
        local = centers + rng.normal(size=centers.shape) * scale
        nl = self._enc.n_num
        if self._enc.conditional:
            # a centre's inactive coordinate has no value to move from: a uniform draw,
            # kept if a flip below activates it (rounding resets it otherwise)
            local[:, :nl] = np.where(centers[:, :nl] == _INACTIVE, rng.random((n_local, nl)), local[:, :nl])
        local[:, nl:] = centers[:, nl:]
        for block in self._blocks:
            flip = rng.random(n_local) < 0.1
            new = rng.integers(block.stop - block.start, size=n_local)
            local[flip, block] = 0.0
            local[np.flatnonzero(flip), block.start + new[flip]] = 1.0
        local[:, :nl] = np.clip(local[:, :nl], 0.0, 1.0)
        return np.concatenate([uniform, local])

    def _maximize(
        self, post: _Posterior, cons: list[tuple[_Posterior, float]], best: float | None, starts: np.ndarray
    ) -> np.ndarray:
        m, d = starts.shape

        def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
            a = flat.reshape(m, d)
            value, grad = _acquisition(post, cons, a, best, grad=True)
            return float(-value.sum()), -grad.ravel()

        result = optimize.minimize(
            objective,
            starts.ravel(),
            jac=True,
            method="L-BFGS-B",
            bounds=[(0.0, 1.0)] * (m * d),
            options={"maxiter": 200},
        )
        return np.clip(result.x.reshape(m, d), 0.0, 1.0)


def _standardize(y: np.ndarray) -> tuple[np.ndarray, float, float]:
    mean, std = float(y.mean()), float(y.std())
    std = std if std > 0 else 1.0
    return (y - mean) / std, mean, std

