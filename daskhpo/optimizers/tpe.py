"""Multivariate Tree-structured Parzen Estimator (TPE).

The completed trials are split into a *good* group (the best ``gamma`` fraction) and a
*bad* group (the rest).  Each group gets one joint density over all searched dimensions: a
mixture with one product kernel per trial (truncated Gaussians on the unit coordinates of
real and integer dimensions, a smoothed indicator on categorical ones) plus the prior as one
more component.  Candidates are drawn from the good density ``l`` and the one maximising
``l(x) / g(x)`` is suggested.  Because the kernels are joint, interactions between
dimensions are modelled, unlike the independent per-dimension TPE of Hyperopt.

Pending trials (asked, not yet told) join the bad group, as a constant liar that reports a
bad value: parallel suggestions are pushed away from points already running.  Their kernels
are as narrow as the good group's (not as wide as the bad group's, whose spread covers the
whole space), at a tenth of a completed trial's weight: they repel from the running points
themselves, not from the good region they were drawn from (issue 20: at 8 in flight the
median regret fell on four of five benchmark problems, 1.3-4x on Rosenbrock and the mixed
space; see ``benchmarks/results/new_algorithms.md``).

Conditional spaces: a parameter that a trial's choices make inactive is absent from that
trial's kernel (the prior stands in for it), so each parameter's density is built from the
trials where it was active, as in Optuna's define-by-run TPE.

Constraints: TPE is told the raw objective and the constraint values
(:attr:`Optimizer.handles_constraints`).  As in Optuna's constrained TPE, the trials are
ranked feasible first (by objective), then infeasible ones by their total violation; the
good group is the head of that ranking, so infeasible trials land in the bad group unless
too few trials are feasible yet.  With ``feasibility_weight > 0``, each candidate's score is
also multiplied by a probability of feasibility (to that power), from one density ratio per
constraint: trials where it held against trials where it did not, as in c-TPE.  It is off
by default: the ranking already puts infeasible trials in the bad group, and on
``benchmarks/constrained.py`` the extra factor made the search worse near a constraint's
boundary, where constrained optima lie.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from scipy import special

from ..space import Space
from ._encoding import Encoding, model_ready
from .base import Optimizer, Suggestion, Trial, check_option

logger = logging.getLogger(__name__)

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _log_mass(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``log(Phi(hi) - Phi(lo))`` for ``lo < hi``, accurate in both tails."""
    # Work on the side of zero where the difference of CDFs does not cancel.
    flip = lo > 0
    a = np.where(flip, -hi, lo)
    b = np.where(flip, -lo, hi)
    log_b = special.log_ndtr(b)
    log_a = special.log_ndtr(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = log_b + np.log1p(-np.exp(np.minimum(log_a - log_b, 0.0)))
    return np.where(np.isfinite(out), out, -np.inf)


class _Parzen:
    """One joint Parzen density over the encoded space.

    Parameters
    ----------
    num, cat : arrays
        The observations (unit coordinates and choice indices), one row each.
    encoding : Encoding
    bandwidth : float
        Multiplier of Scott's rule for the numeric kernels.
    prior_weight : float
        Weight of the prior component, relative to one observation.
    """

    def __init__(
        self,
        num: np.ndarray,
        cat: np.ndarray,
        encoding: Encoding,
        bandwidth: float,
        prior_weight: float,
        weights: np.ndarray | None = None,
        sigma: np.ndarray | None = None,
    ) -> None:
        n = len(num)
        self.enc = encoding
        self.mu = num
        self.cat = cat
        self.n = n
        d = max(encoding.n_num, 1)
        fixed = sigma
        if encoding.conditional:
            # each dimension's spread over the observations where it is active
            spread = _active_std(num)
        elif n > 1:
            spread = num.std(axis=0)
        else:
            spread = np.full(encoding.n_num, 0.5)
        scott = bandwidth * n ** (-1.0 / (d + 4))
        sigma = np.maximum(spread, 0.1) * scott
        # Never narrower than what the history can resolve, nor than one integer cell.
        floor = np.full(encoding.n_num, 0.5 / (n + 1))
        for j, cells in encoding.int_cells.items():
            floor[j] = max(floor[j], float(np.max(cells.upper - cells.lower)) / 2)
        self.sigma = np.clip(np.maximum(sigma, floor), 1e-4, 1.0) if fixed is None else fixed
        # Component weights: observations, then the prior (weight 0: none).
        w = np.append(np.ones(n) if weights is None else weights, prior_weight)
        with np.errstate(divide="ignore"):
            self.log_w = np.log(w / w.sum())
        # Categorical kernel: keep the observed choice with 1 - eps, else the prior.
        self.eps = 1.0 / (1.0 + math.sqrt(n)) if n else 1.0
        # Normalisers of the truncated kernels over [0, 1].
        self.log_z = _log_mass((0.0 - num) / self.sigma, (1.0 - num) / self.sigma)
        if encoding.conditional:
            # Where an observation lacks a dimension (inactive there), its kernel is the
            # prior on that dimension: a candidate that has it is drawn from the prior.
            self.absent = np.isnan(num)
            self.mu_filled = np.where(self.absent, 0.5, num)
            self.log_z = np.where(self.absent, 0.0, self.log_z)

    def sample(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        enc = self.enc
        comp = rng.choice(self.n + 1, size=size, p=np.exp(self.log_w))
        from_prior = comp == self.n
        obs = np.where(from_prior, 0, comp)
        num = rng.random((size, enc.n_num))
        if self.n and enc.n_num:
            mu, sigma = (self.mu_filled if enc.conditional else self.mu)[obs], self.sigma
            lo = special.ndtr((0.0 - mu) / sigma)
            hi = special.ndtr((1.0 - mu) / sigma)
            u = lo + rng.random((size, enc.n_num)) * (hi - lo)
            draw = mu + sigma * special.ndtri(np.clip(u, 1e-300, 1 - 1e-16))
            use_prior = from_prior[:, None]
            if enc.conditional:
                use_prior = use_prior | self.absent[obs]
            num = np.where(use_prior, num, np.clip(draw, 0.0, 1.0))
        cat = np.empty((size, enc.n_cat), dtype=np.int64)
        for j, prior in enumerate(enc.cat_priors):
            from_kernel = (~from_prior) & (rng.random(size) >= self.eps)
            drawn = rng.choice(len(prior), size=size, p=prior)
            if self.n:
                kept = self.cat[obs, j]
                if enc.conditional:
                    from_kernel &= kept >= 0  # absent in the observation: its prior
                drawn = np.where(from_kernel, kept, drawn)
            cat[:, j] = drawn
        # every coordinate was drawn; those the drawn choices make inactive are dropped
        return enc.mask(enc.snap(num), cat)

    def log_pdf(self, num: np.ndarray, cat: np.ndarray) -> np.ndarray:
        """Log density (log mass on integer and categorical dimensions) of each point.

        In a conditional space points and observations may lack dimensions (NaN / -1).  The
        density of a point is then over its active dimensions only (the others are integrated
        out: a factor 1), and on a dimension an observation lacks, that observation's kernel is
        the dimension's prior.  This keeps ``l`` and ``g`` comparable between points of
        different branches, as Optuna's define-by-run TPE does by building each parameter's
        density from the trials where it was active.
        """
        enc = self.enc
        m = len(num)
        cond = enc.conditional
        if cond:
            num_on, cat_on = ~np.isnan(num), cat >= 0  # (m, d): the point has the dimension
            num, cat = np.where(num_on, num, 0.5), np.maximum(cat, 0)  # placeholders, masked below
        mu = self.mu_filled if cond else self.mu
        # Prior component: uniform on the unit cube, the prior on categories, cells' widths on integers.
        log_prior = np.zeros(m)
        prior_int: dict[int, np.ndarray] = {}
        for j, cells in enc.int_cells.items():
            i = cells.index(num[:, j])
            prior_int[j] = np.log(cells.upper[i] - cells.lower[i])
            if cond:
                prior_int[j] = np.where(num_on[:, j], prior_int[j], 0.0)
            log_prior += prior_int[j]
        prior_cat = []
        for j, prior in enumerate(enc.cat_priors):
            prior_cat.append(np.log(prior[cat[:, j]]))
            if cond:
                prior_cat[j] = np.where(cat_on[:, j], prior_cat[j], 0.0)
            log_prior += prior_cat[j]
        if not self.n:
            return log_prior
        # Observation components: (m, n) sums over dimensions.
        comp = np.zeros((m, self.n))
        if enc.n_num:
            z = (num[:, None, :] - mu[None, :, :]) / self.sigma
            log_k = -0.5 * z**2 - _LOG_SQRT_2PI - np.log(self.sigma)
            for j, cells in enc.int_cells.items():
                i = cells.index(num[:, j])
                lo = (cells.lower[i][:, None] - mu[None, :, j]) / self.sigma[j]
                hi = (cells.upper[i][:, None] - mu[None, :, j]) / self.sigma[j]
                log_k[:, :, j] = _log_mass(lo, hi)
            log_k = log_k - self.log_z[None, :, :]
            if cond:
                prior_num = np.zeros((m, enc.n_num))  # 0 on continuous dimensions (density 1)
                for j, values in prior_int.items():
                    prior_num[:, j] = values
                log_k = np.where(self.absent[None, :, :], prior_num[:, None, :], log_k)
                log_k = np.where(num_on[:, None, :], log_k, 0.0)
            comp += log_k.sum(axis=2)
        for j, prior in enumerate(enc.cat_priors):
            same = cat[:, j][:, None] == self.cat[None, :, j]
            p_other = self.eps * prior[cat[:, j]][:, None]
            term = np.log(np.where(same, 1.0 - self.eps + p_other, p_other))
            if cond:
                term = np.where(self.cat[None, :, j] < 0, prior_cat[j][:, None], term)
                term = np.where(cat_on[:, j][:, None], term, 0.0)
            comp += term
        parts = np.concatenate([comp + self.log_w[None, :-1], (log_prior + self.log_w[-1])[:, None]], axis=1)
        return special.logsumexp(parts, axis=1)


def _active_std(num: np.ndarray) -> np.ndarray:
    """Each column's standard deviation over its non-NaN entries (0.5 with fewer than two)."""
    on = ~np.isnan(num)
    count = on.sum(axis=0)
    filled = np.where(on, num, 0.0)
    mean = filled.sum(axis=0) / np.maximum(count, 1)
    var = (np.where(on, num - mean, 0.0) ** 2).sum(axis=0) / np.maximum(count, 1)
    return np.where(count > 1, np.sqrt(var), 0.5)


class TPE(Optimizer):
    """Multivariate Tree-structured Parzen Estimator.

    Parameters
    ----------
    space : Space
    seed : int, optional
    n_initial : int, default 10
        Suggestions drawn at random from the priors before the model is used (in parallel
        runs the model starts once half of them have completed).
    gamma : float, default 0.1
        Fraction of the completed trials in the good group (at least one, at most
        ``max_good``).
    max_good : int, default 25
        Upper bound on the size of the good group, so that it stays selective in long runs.
    n_candidates : int, default 64
        Candidates drawn from the good density per suggestion; the best ratio wins.
    bandwidth : float, default 0.5
        Multiplier of the kernels' width (Scott's rule on each group's spread).
    prior_weight : float, default 1.0
        Weight of the prior in each density, relative to one trial.
    constant_liar : bool, default True
        Count pending trials (asked, not yet told) in the bad group, so that parallel
        suggestions spread out.
    liar_weight : float, default 0.1
        Weight of each pending trial in the bad group, relative to a completed one: enough
        to push parallel suggestions apart, not so much that eight trials in flight drive
        the search away from the good region.
    liar_kernel : {"good", "bad"}, default "good"
        The width of the pending trials' kernels: the good group's (they repel from the
        running points only) or the bad group's (wide: they repel from the whole region
        around them, the behaviour before issue 20, with ``liar_weight=0.25``).
    max_bad : int, default 200
        Most completed trials in the bad group's density: beyond it, a seeded random sample
        of that size (a function of the history only), each weighted so that the group
        keeps its total weight.  It bounds the cost of a suggestion (``O(n_candidates *
        (max_good + max_bad + pending) * n_dims)``) whatever the history.
    max_pending : int, default 256
        Most pending trials counted as liars (the most recently asked ones).
    feasibility_weight : float, default 0.0
        In a constrained run, the power of the probability-of-feasibility factor on each
        candidate's score (``0``: none, only the feasible-first ranking; ``1``: the plain
        factor).  It costs two more densities per constraint for each suggestion.

    Notes
    -----
    Trials that did not complete (broken, timed out, lost) are not modelled; a pruned trial
    counts only if it carries a finite objective.  The cost of a suggestion is
    ``O(n_candidates * (max_good + max_bad + max_pending) * n_dims)`` numpy work, without
    Python loops over trials: bounded, whatever the history.
    """

    name = "tpe"
    fills_idle_slots = True
    handles_constraints = True

    def __init__(
        self,
        space: Space,
        seed: int | None = None,
        n_initial: int = 10,
        gamma: float = 0.1,
        max_good: int = 25,
        n_candidates: int = 64,
        bandwidth: float = 0.5,
        prior_weight: float = 1.0,
        constant_liar: bool = True,
        liar_weight: float = 0.1,
        max_bad: int = 200,
        max_pending: int = 256,
        feasibility_weight: float = 0.0,
        liar_kernel: str = "good",
    ) -> None:
        super().__init__(space, seed)
        check_option("tpe", "n_initial", n_initial, "int", low=1)
        check_option("tpe", "max_good", max_good, "int", low=1)
        check_option("tpe", "n_candidates", n_candidates, "int", low=1)
        check_option("tpe", "gamma", gamma, low=0, high=1, low_open=True, high_open=True)
        for option, value in (("bandwidth", bandwidth), ("prior_weight", prior_weight), ("liar_weight", liar_weight)):
            check_option("tpe", option, value, low=0, low_open=True)
        check_option("tpe", "constant_liar", constant_liar, "bool")
        check_option("tpe", "max_bad", max_bad, "int", low=1)
        check_option("tpe", "max_pending", max_pending, "int", low=0)
        check_option("tpe", "feasibility_weight", feasibility_weight, low=0)
        self.feasibility_weight = float(feasibility_weight)
        check_option("tpe", "liar_kernel", liar_kernel, "choice", choices=("bad", "good"))
        self.liar_kernel = liar_kernel
        self.max_bad = max_bad
        self.max_pending = max_pending
        self.n_initial = n_initial
        self.gamma = float(gamma)
        self.max_good = max_good
        self.n_candidates = n_candidates
        self.bandwidth = float(bandwidth)
        self.prior_weight = float(prior_weight)
        self.constant_liar = constant_liar
        self.liar_weight = float(liar_weight)
        self._enc = Encoding(self.space)
        #: whether any modelled trial was infeasible (then the ranking is constrained)
        self._infeasible = False
        self._num: list[np.ndarray] = []
        self._cat: list[np.ndarray] = []
        self._y: list[float] = []
        #: each modelled trial's total constraint violation (0: feasible)
        self._v: list[float] = []
        #: each modelled trial's constraint values
        self._c: list[tuple[float, ...]] = []
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def config(self) -> dict[str, Any]:
        """The options, as given (stored in the history's attrs)."""
        return {
            "n_initial": self.n_initial,
            "gamma": self.gamma,
            "max_good": self.max_good,
            "n_candidates": self.n_candidates,
            "bandwidth": self.bandwidth,
            "prior_weight": self.prior_weight,
            "constant_liar": self.constant_liar,
            "liar_weight": self.liar_weight,
            "max_bad": self.max_bad,
            "max_pending": self.max_pending,
            "feasibility_weight": self.feasibility_weight,
            "liar_kernel": self.liar_kernel,
        }

    def n_good(self, n: int) -> int:
        """Size of the good group among ``n`` completed trials."""
        return int(min(max(1, math.ceil(self.gamma * n)), self.max_good, n))

    def ask(self, trial_id: int) -> Suggestion:
        """Suggest trial ``trial_id``: a prior draw at first, then the best of the candidates."""
        rng = self.rng_for(trial_id)
        enc = self._enc
        if not self._use_model() or (enc.n_num == 0 and enc.n_cat == 0):
            num, cat = enc.random(rng, 1)
        else:
            num, cat = self._suggest(rng)
        self._pending.add(trial_id, (num[0], cat[0]))
        return Suggestion(enc.decode(num[0], cat[0]))

    def _use_model(self) -> bool:
        return model_ready(len(self._y), len(self._pending), self.n_initial)

    def _suggest(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        enc = self._enc
        num, cat, y, v = self._history_arrays()
        good, bad, good_w = self._split(y, v)
        bad_w = np.ones(len(bad))
        if len(bad) > self.max_bad:
            # a seeded sample of the bad group (a function of the history size only),
            # weighted to keep the group's weight against the prior and the liars
            keep = self.rng_for(len(y), stream="tpe-bad").choice(len(bad), self.max_bad, replace=False)
            bad, bad_w = bad[np.sort(keep)], np.full(self.max_bad, len(bad) / self.max_bad)
        bad_num, bad_cat = num[bad], cat[bad]
        pend_num = pend_cat = None
        if self.constant_liar and self._pending and self.max_pending:
            points = self._pending.values()[-self.max_pending :]
            n_pending = len(points)
            pend_num = np.array([p[0] for p in points]).reshape(n_pending, enc.n_num)
            pend_cat = np.array([p[1] for p in points]).reshape(n_pending, enc.n_cat)
            if self.liar_kernel == "bad":
                bad_num = np.concatenate([bad_num, pend_num])
                bad_cat = np.concatenate([bad_cat, pend_cat])
                bad_w = np.append(bad_w, np.full(n_pending, self.liar_weight))
                pend_num = None
        l_model = _Parzen(num[good], cat[good], enc, self.bandwidth, self.prior_weight, good_w)
        g_model = _Parzen(bad_num, bad_cat, enc, self.bandwidth, self.prior_weight, bad_w)
        cand_num, cand_cat = l_model.sample(rng, self.n_candidates)
        log_g = g_model.log_pdf(cand_num, cand_cat)
        if pend_num is not None:
            # the liars' kernels as narrow as the good group's: they repel from the pending
            # points themselves, not (as the bad group's wide kernels do) from the region
            p_model = _Parzen(pend_num, pend_cat, enc, self.bandwidth, 0.0, sigma=l_model.sigma)
            w_bad = float(bad_w.sum()) + self.prior_weight
            w_pend = self.liar_weight * len(pend_num)
            log_g = np.logaddexp(
                log_g + math.log(w_bad / (w_bad + w_pend)),
                p_model.log_pdf(cand_num, cand_cat) + math.log(w_pend / (w_bad + w_pend)),
            )
        score = l_model.log_pdf(cand_num, cand_cat) - log_g
        if self._infeasible and self.feasibility_weight > 0:
            score = score + self.feasibility_weight * self._log_feasibility(num, cat, cand_num, cand_cat)
        best = int(np.argmax(score))
        return cand_num[best : best + 1], cand_cat[best : best + 1]

    def _split(self, y: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The good and bad groups (indices of modelled trials) and the good trials' weights.

        The seam of multi-objective TPE (:class:`daskhpo.optimizers.motpe.MOTPE`), which
        ranks by Pareto fronts instead of ``y``.  ``None`` weights: all equal.
        """
        if self._infeasible:
            # feasible first by objective, then infeasible by violation (Optuna's c-TPE)
            order = np.lexsort((y, v))
        else:
            order = np.argsort(y, kind="stable")
        k = self.n_good(len(y))
        return order[:k], order[k:], None

    def _log_feasibility(
        self, num: np.ndarray, cat: np.ndarray, cand_num: np.ndarray, cand_cat: np.ndarray
    ) -> np.ndarray:
        """``sum_k log P(c_k <= 0 | x)`` of each candidate, one density ratio per constraint.

        As in c-TPE (Watanabe & Hutter, 2023): the trials where constraint ``k`` held give a
        density ``l_k``, those where it did not ``g_k``, and Bayes' rule with the feasible
        fraction ``f_k`` gives ``P = f_k l_k / (f_k l_k + (1 - f_k) g_k)``.  Each group is
        capped at ``max_bad`` trials (a seeded sample) so the cost stays bounded.
        """
        enc, n = self._enc, len(num)
        values = np.full((n, max((len(c) for c in self._c), default=0)), np.nan)
        for i, c in enumerate(self._c):
            values[i, : len(c)] = c
        out = np.zeros(len(cand_num))
        for k in range(values.shape[1]):
            known = ~np.isnan(values[:, k])
            ok = np.flatnonzero(known & (values[:, k] <= 0))
            bad = np.flatnonzero(known & (values[:, k] > 0))
            if not len(ok) or not len(bad):
                continue  # nothing to contrast: no information on this constraint
            log_f = math.log(len(ok) / (len(ok) + len(bad)))
            log_nf = math.log(len(bad) / (len(ok) + len(bad)))
            parts = []
            for group, stream in ((ok, "tpe-feasible"), (bad, "tpe-infeasible")):
                if len(group) > self.max_bad:
                    keep = self.rng_for(n, stream=f"{stream}-{k}").choice(len(group), self.max_bad, replace=False)
                    group = group[np.sort(keep)]
                model = _Parzen(num[group], cat[group], enc, self.bandwidth, self.prior_weight)
                parts.append(model.log_pdf(cand_num, cand_cat))
            feasible = log_f + parts[0]
            out += feasible - np.logaddexp(feasible, log_nf + parts[1])
        return out

    def _history_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The modelled trials as arrays, extended (not rebuilt) as trials arrive."""
        enc, n = self._enc, len(self._y)
        arrays = self._arrays
        have = 0 if arrays is None else len(arrays[2])
        if have != n:
            new_num = np.asarray(self._num[have:]).reshape(n - have, enc.n_num)
            new_cat = np.asarray(self._cat[have:], dtype=np.int64).reshape(n - have, enc.n_cat)
            new_y = np.asarray(self._y[have:], dtype=float)
            new_v = np.asarray(self._v[have:], dtype=float)
            if arrays is None:
                arrays = (new_num, new_cat, new_y, new_v)
            else:
                arrays = tuple(np.concatenate([a, b]) for a, b in zip(arrays, (new_num, new_cat, new_y, new_v)))
            self._arrays = arrays
        return arrays

    def tell(self, trial: Trial) -> None:
        """Forget the trial as pending; model it if it completed with a finite objective."""
        self._pending.pop(trial.id, None)
        if not trial.ok:
            return
        encoded = self._enc.encode(trial.params)
        if encoded is None:
            logger.warning("tpe: trial %s has parameters outside the space; ignored", trial.id)
            return
        self._num.append(encoded[0])
        self._cat.append(encoded[1])
        self._y.append(float(trial.objective))
        violation = sum(max(c, 0.0) for c in trial.constraints)
        self._v.append(violation)
        self._c.append(trial.constraints)
        self._infeasible = self._infeasible or violation > 0

