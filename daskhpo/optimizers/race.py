"""Racing (IRACE-style, F-Race) for noisy objectives.

Each configuration is evaluated instance by instance (CV folds, seeds, datasets): the
objective calls ``daskhpo.report(step=instance, objective=score)`` after each instance, in
the same instance order for every configuration, and returns the mean of its scores.  After
``first_test`` instances, each report of a configuration ``c`` is a test:

* the *block* is ``c`` and every completed configuration still in the race that has a
  score on each instance ``c`` has reported: configurations that started at different times
  are compared on the instances they share;
* with three or more configurations in the block, a Friedman test (ranks within each
  instance, tie-corrected as :func:`scipy.stats.friedmanchisquare`); when it rejects at
  ``alpha``, Conover's pairwise post-hoc test of each configuration against the best (the
  lowest rank sum), as F-Race and irace do; with two, a paired Wilcoxon signed-rank test
  (:func:`scipy.stats.wilcoxon`, exact without ties: at ``alpha=0.05`` it needs 6 instances);
* ``c`` is pruned if it is significantly worse than the best.

When a configuration completes, the same test over all its instances removes from the race
the completed configurations significantly worse than the best (they stay ``completed`` in
the history, but no later block includes them, as F-Race drops eliminated candidates).

Running configurations are compared with completed ones, not with each other: a decision
depends only on the trials that finished before it and on the reporting trial's own
reports.  So a resumed race, which is told the finished trials' reports and results in
their live order, decides exactly as the live one did (a trial interrupted mid-run leaves
no trace), and a trial that never finishes never holds a place in the race.  The price:
nothing is pruned before the first configuration completes.

**The best of a race** is the completed configuration with the lowest mean over all
``instances`` (:attr:`Race.incumbent`).  For :attr:`daskhpo.Experiment.best` to agree, the
objective returns that mean; a trial whose returned objective differs from the mean of
its reported scores is ranked by the mean here, with a warning.

**What the sampler learns.**  New configurations come from ``sampler`` (any registered
single-objective algorithm that does not decide on reports itself: ``"tpe"`` by default,
``"random"``, ``"gp"``, ...).  It is told every configuration, as a completed trial:

* a configuration with a score on every instance: the mean of its scores;
* a pruned one (or one that completed with fewer instances): an estimate of the mean it
  would have had, ``mean_i(y_ci - m_i) + mean(m)``, where ``m_i`` is the mean score on
  instance ``i`` of the configurations evaluated on every instance (an additive
  configuration + instance model: a configuration pruned on hard instances is not
  mistaken for a bad one), and never better than the incumbent's mean (it was pruned for
  being worse).  Without any fully evaluated configuration yet, the plain mean of its
  scores.

Pruned configurations are a third to nine tenths of a race (``benchmarks/racing.py``);
telling a model-based sampler that their region is bad is what keeps it from suggesting
more of them (a TPE told nothing of them did 3 to 5 times worse there).  Configurations that failed (broken,
timed out, lost) are told as they are.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import replace
from typing import Any

import numpy as np

from ..space import Space
from .base import CONTINUE, PRUNE, Optimizer, Report, Suggestion, Trial, check_option, option_error

__all__ = ["Race", "race_test"]

logger = logging.getLogger(__name__)

# states of a configuration in the race
_RUNNING, _COMPLETED, _ELIMINATED, _PRUNED, _FAILED = "running", "completed", "eliminated", "pruned", "failed"


def race_test(scores: np.ndarray, alpha: float) -> tuple[int, list[int], float]:
    """One F-Race test: which configurations are significantly worse than the best.

    Parameters
    ----------
    scores : numpy.ndarray
        Shape ``(instances, configurations)``: values to minimize, one row per instance
        (a block), at least two rows and two columns.
    alpha : float
        Significance level of the omnibus test and of the post-hoc comparisons.

    Returns
    -------
    best : int
        Column of the best configuration: the lowest rank sum (ties: the lowest mean, then
        the first column).
    worse : list of int
        Columns significantly worse than ``best``, in column order.
    p_value : float
        Of the Friedman test (three or more columns) or the paired Wilcoxon signed-rank
        test (two columns); 1.0 when every instance ties every configuration.

    Notes
    -----
    With ``k >= 3`` configurations over ``b`` instances, ranks ``R_ij`` within each instance
    (ties averaged), rank sums ``R_j`` and ``A = sum R_ij**2``: the Friedman statistic ``T``
    (tie-corrected, :func:`scipy.stats.friedmanchisquare`); if its p-value is below
    ``alpha``, configuration ``j`` is worse than the best when ``R_j - R_best`` exceeds
    ``t_{1-alpha/2, (b-1)(k-1)} * sqrt(2 (b A - sum R_j**2) / ((b-1)(k-1)))`` (Conover,
    *Practical Nonparametric Statistics*, 1999, pp. 369-371; the rule of F-Race and irace).

    Examples
    --------
    >>> import numpy as np
    >>> scores = np.array([[1.0, 2.0, 3.0]] * 6) + np.arange(6)[:, None]  # same order on 6 instances
    >>> best, worse, p = race_test(scores, 0.05)
    >>> best, worse, p < 0.05
    (0, [1, 2], True)
    """
    from scipy import special, stats

    scores = np.asarray(scores, dtype=float)
    b, k = scores.shape
    if b < 2 or k < 2:
        raise ValueError(f"race_test needs at least 2 instances and 2 configurations, got shape {scores.shape}")
    ranks, ties = _ranks(scores)
    rank_sums = ranks.sum(axis=0)
    means = scores.mean(axis=0)
    best = min(range(k), key=lambda j: (rank_sums[j], means[j], j))
    if k == 2:
        diff = scores[:, 0] - scores[:, 1]
        if not np.any(diff != 0):
            return best, [], 1.0
        p = _wilcoxon(diff)
        if not p < alpha:
            return best, [], p
        # the better one by the signed-rank sums (what the test compared), not by rank sums
        signed = stats.rankdata(np.abs(diff[diff != 0]))
        positive, negative = signed[diff[diff != 0] > 0].sum(), signed[diff[diff != 0] < 0].sum()
        best = 1 if positive > negative else 0
        return best, [1 - best], p
    # The statistic of scipy.stats.friedmanchisquare (tie-corrected), written out with the
    # distributions' ufuncs: scipy.stats' wrappers cost milliseconds a call, on every report.
    denominator = b * k * (k + 1) - ties / (k - 1)
    if denominator <= 0:  # every instance ties every configuration
        return best, [], 1.0
    statistic = 12 * float(((rank_sums - b * (k + 1) / 2) ** 2).sum()) / denominator
    p = float(special.chdtrc(k - 1, statistic))
    if not p < alpha:
        return best, [], p
    dof = (b - 1) * (k - 1)
    spread = b * float((ranks**2).sum()) - float((rank_sums**2).sum())
    critical = float(special.stdtrit(dof, 1 - alpha / 2)) * math.sqrt(max(2 * spread / dof, 0.0))
    worse = [j for j in range(k) if j != best and rank_sums[j] - rank_sums[best] > critical]
    return best, worse, p


@functools.lru_cache(maxsize=64)
def _signed_rank_counts(n: int) -> np.ndarray:
    """How many of the 2**n sign patterns give each sum of positive ranks 0 .. n(n+1)/2."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1
    for rank in range(1, n + 1):
        counts[rank:] = counts[rank:] + counts[:-rank].copy()
    return counts


def _wilcoxon(diff: np.ndarray) -> float:
    """Two-sided p-value of the paired Wilcoxon signed-rank test on ``diff``.

    Exact without zeros and ties (what :func:`scipy.stats.wilcoxon` computes then, at a
    fraction of its cost per call); otherwise scipy's.
    """
    n = len(diff)
    magnitude = np.abs(diff)
    if n > 50 or np.any(diff == 0) or len(np.unique(magnitude)) < n:
        from scipy import stats

        return float(stats.wilcoxon(diff).pvalue)
    ranks = np.argsort(np.argsort(magnitude)) + 1
    positive = int(ranks[diff > 0].sum())
    counts = _signed_rank_counts(n)
    below, above = counts[: positive + 1].sum(), counts[positive:].sum()
    return float(min(1.0, 2 * min(below, above) / 2.0**n))


def _ranks(scores: np.ndarray) -> tuple[np.ndarray, float]:
    """Ranks within each row (ties averaged) and the ties term ``sum(t**3 - t)`` over tie groups.

    By pairwise comparison: for the few configurations of a block this is several times
    faster than :func:`scipy.stats.rankdata` (which it equals).
    """
    if scores.shape[1] > 256:  # pairwise tables would grow too large: sort instead
        from scipy import stats

        ranks = stats.rankdata(scores, axis=1)
        ties = sum(float((c**3 - c).sum()) for c in (np.unique(r, return_counts=True)[1] for r in scores))
        return ranks, ties
    below = (scores[:, None, :] < scores[:, :, None]).sum(-1)
    equal = (scores[:, None, :] == scores[:, :, None]).sum(-1)  # itself included
    # a tie group of t values holds t elements, each with equal == t: sum(equal**2 - 1) = sum(t**3 - t)
    return below + (equal + 1) / 2, float((equal**2 - 1).sum())


class Race(Optimizer):
    """Racing of configurations over instances, with Friedman tests (see the module documentation).

    Parameters
    ----------
    space : Space
    seed : int, optional
    sampler : str, (str, dict) or Optimizer, default "tpe"
        Where new configurations come from: a single-objective algorithm that does not
        decide on reports itself (not ``asha``, ``hyperband``, ``pbt`` or ``race``).
    instances : int, default 10
        Instances each configuration is evaluated on (``report`` steps per trial).
    first_test : int, default 5
        Instances a configuration must have before it is tested (at least 2, at most
        ``instances``).
    alpha : float, default 0.05
        Significance level of the tests, in (0, 1).

    Examples
    --------
    >>> algorithm = ("race", {"sampler": "tpe", "instances": 10, "first_test": 5, "alpha": 0.05})
    """

    name = "race"

    def __init__(
        self,
        space: Space,
        seed: int | None = None,
        sampler: Any = "tpe",
        instances: int = 10,
        first_test: int = 5,
        alpha: float = 0.05,
    ) -> None:
        super().__init__(space, seed)
        check_option(self.name, "instances", instances, "int", low=2)
        check_option(self.name, "first_test", first_test, "int", low=2, high=instances)
        check_option(self.name, "alpha", alpha, low=0, high=1, low_open=True, high_open=True)
        self.instances, self.first_test, self.alpha = int(instances), int(first_test), float(alpha)
        from . import make_optimizer  # the registry imports this module lazily

        self._sampler_spec = sampler
        self.sampler = make_optimizer(sampler, self.space, self.seed)
        if type(self.sampler).report is not Optimizer.report:
            raise option_error(
                self.name, "sampler",
                f"must not decide on reports itself (got {self.sampler.name or type(self.sampler).__name__!r}); "
                "use a single-objective algorithm such as 'tpe', 'random' or 'gp'",
            )
        #: trial -> {instance (step): minimized score}
        self._scores: dict[int, dict[float, float]] = {}
        #: trial -> state in the race
        self._state: dict[int, str] = {}
        #: completed configurations still in the race (what blocks are made of), in id order
        self._racing: list[int] = []
        #: over the completed configurations with every instance: per instance, the sum and
        #: number of scores (the reference of estimates), and (mean, trial) of the best
        self._ref_sum: dict[float, float] = {}
        self._ref_n: dict[float, int] = {}
        self._best: tuple[float, int] | None = None
        self._warned_mean = False

    # -- configuration -----------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        """The options, as given (stored in the history's attrs)."""
        from . import algorithm_spec

        spec = algorithm_spec(self._sampler_spec)
        return {"sampler": spec, "instances": self.instances, "first_test": self.first_test, "alpha": self.alpha}

    @property
    def pending(self) -> tuple[int, ...]:
        """Trials asked for and not yet told, here or in the sampler."""
        own = tuple(self._pending)
        return own + tuple(t for t in self.sampler.pending if t not in own)

    def needed_checkpoints(self) -> set[int]:
        """A race never starts a trial from a checkpoint."""
        return set()

    # -- what the race knows -----------------------------------------------------------
    def _full(self, trial_id: int) -> bool:
        return len(self._scores.get(trial_id, ())) >= self.instances

    @property
    def incumbent(self) -> int | None:
        """The best configuration so far: the completed trial with the lowest mean score
        over all ``instances`` (ties: the earliest), or ``None`` before the first one."""
        return None if self._best is None else self._best[1]

    def mean(self, trial_id: int) -> float:
        """The mean reported score of a configuration (minimized; NaN without reports)."""
        scores = self._scores.get(trial_id)
        return float(np.mean(list(scores.values()))) if scores else math.nan

    def status(self, trial_id: int) -> str | None:
        """Where a configuration stands: ``"running"``, ``"completed"``, ``"eliminated"``
        (completed, then shown worse), ``"pruned"``, ``"failed"``, or ``None`` if unknown."""
        return self._state.get(trial_id)

    def estimate(self, trial_id: int) -> float:
        """The mean score over all instances a configuration has, or would have had.

        Its own mean when it has every instance; otherwise the additive estimate of the
        module documentation, never better than the incumbent's mean.
        """
        scores = self._scores.get(trial_id)
        if not scores:
            return math.nan
        if self._full(trial_id):
            return self.mean(trial_id)
        if self._best is None:  # no configuration evaluated on every instance yet
            return self.mean(trial_id)
        # the sums cover a fixed set of configurations per instance when every configuration
        # runs the instances in the same order; otherwise each instance's own mean
        by_instance = {i: self._ref_sum[i] / self._ref_n[i] for i in self._ref_sum}
        shared = [i for i in scores if i in by_instance]
        if not shared:
            return self.mean(trial_id)
        offset = float(np.mean([scores[i] - by_instance[i] for i in shared]))
        value = offset + float(np.mean(list(by_instance.values())))
        return max(value, self._best[0])

    # -- protocol ----------------------------------------------------------------------
    def ask(self, trial_id: int) -> Suggestion | None:
        """A new configuration from the sampler (the race never runs one twice)."""
        suggestion = self.sampler.ask(trial_id)
        if suggestion is None:
            return None
        self._pending.add(trial_id)
        return Suggestion(dict(suggestion.params))

    def report(self, report: Report) -> str:
        """Record the score of one instance; after ``first_test`` of them, test the configuration."""
        trial_id = report.trial_id
        state = self._state.get(trial_id)
        if state is None:
            state = self._state[trial_id] = _RUNNING
        if not math.isfinite(report.objective):
            return PRUNE if state == _PRUNED else CONTINUE
        self._scores.setdefault(trial_id, {})[float(report.step)] = float(report.objective)
        if state == _PRUNED:
            return PRUNE  # its score on the step it ran before it saw the decision: data all the same
        if state != _RUNNING or len(self._scores[trial_id]) < self.first_test:
            return CONTINUE
        return self._test(trial_id)

    def _block(self, trial_id: int) -> list[int]:
        """``trial_id`` and the completed configurations in the race with all its instances, by id."""
        steps = self._scores[trial_id]
        block = [t for t in self._racing if t != trial_id and all(i in self._scores[t] for i in steps)]
        return sorted([*block, trial_id])

    def _worse(self, members: list[int], trial_id: int) -> list[int]:
        """The members significantly worse than the best, on the instances of ``trial_id``."""
        if len(members) < 2:
            return []
        steps = sorted(self._scores[trial_id])
        table = np.array([[self._scores[t][i] for t in members] for i in steps])
        return [members[j] for j in race_test(table, self.alpha)[1]]

    def _test(self, trial_id: int) -> str:
        if trial_id in self._worse(self._block(trial_id), trial_id):
            self._state[trial_id] = _PRUNED
            return PRUNE
        return CONTINUE

    def _eliminate(self, trial_ids: list[int]) -> None:
        for t in trial_ids:
            self._state[t] = _ELIMINATED
        self._racing = [t for t in self._racing if t not in trial_ids]

    def tell(self, trial: Trial) -> None:
        """End a configuration's race; tell the sampler its (estimated) mean over all instances."""
        self._pending.pop(trial.id)
        state = self._state.get(trial.id)
        scores = self._scores.get(trial.id)
        if trial.status not in ("completed", "pruned"):
            self._state[trial.id] = _FAILED
            self.sampler.tell(trial)
            return
        if any(c > 0 for c in trial.constraints):
            # infeasible: out of the race, so its scores neither make it the best nor prune or
            # eliminate feasible configurations; the sampler hears the experiment's penalty
            self._state[trial.id] = _ELIMINATED
            self.sampler.tell(trial)
            return
        if trial.status == "completed" and scores and self._full(trial.id):
            for i, value in scores.items():
                self._ref_sum[i] = self._ref_sum.get(i, 0.0) + value
                self._ref_n[i] = self._ref_n.get(i, 0) + 1
            self._best = min(self._best or (math.inf, -1), (self.mean(trial.id), trial.id))
        if trial.status == "pruned" or state == _PRUNED:
            # pruned, or completed after a prune decision at its last instance: out of the race
            self._state[trial.id] = _PRUNED if trial.status == "pruned" else _ELIMINATED
        else:
            self._state[trial.id] = _COMPLETED
            self._racing = sorted([*self._racing, trial.id])
            if scores and len(scores) >= self.first_test:
                # its full evidence: the completed configurations worse than the best leave the race
                self._eliminate(self._worse(self._block(trial.id), trial.id))
        if not scores:  # it reported nothing (a resume of an older run, a foreign trial)
            self.sampler.tell(trial)
            return
        if trial.status == "completed" and self._full(trial.id) and math.isfinite(trial.objective):
            mean = self.mean(trial.id)
            if not math.isclose(trial.objective, mean, rel_tol=1e-6, abs_tol=1e-9) and not self._warned_mean:
                self._warned_mean = True
                logger.warning(
                    "race: trial %d returned %g, but the mean of its %d reported scores is %g; the race ranks "
                    "configurations by that mean: return it from the objective so that experiment.best agrees",
                    trial.id, trial.objective, len(scores), mean,
                )
        self.sampler.tell(self._for_sampler(trial))

    def _for_sampler(self, trial: Trial) -> Trial:
        """What the sampler is told of a finished configuration that reported scores."""
        return replace(trial, status="completed", objective=self.estimate(trial.id))
