"""ParEGO: several objectives searched by a single-objective sampler, one random scalarization at a time.

Knowles (2006), ParEGO: each suggestion draws a weight vector ``w`` uniformly on the simplex,
turns every completed trial's objective vector into one number with the augmented Chebyshev
function of the normalized objectives,

    s(y) = max_i w_i z_i + rho * sum_i w_i z_i,   z_i = (y_i - min_i) / (max_i - min_i),

and asks a single-objective model-based sampler (``tpe`` or ``gp``) for the configuration
that minimizes ``s``.  Over many suggestions the random weights spread the search along the
whole Pareto front, and each one is as cheap as one of the sampler's.

Because every suggestion has its own scalarization, the sampler is built afresh for each
one and told the whole history in the order it happened: what the sampler keeps is a
function of the history and the trial id, so the same seed and results give the same
suggestions, and a resumed run continues the live one.  Trials in flight are told to that
sampler as completed with the worst scalarized value so far (a pessimistic constant liar),
so that parallel suggestions spread out instead of piling onto one point.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..space import Space
from .base import Optimizer, Suggestion, Trial, check_option, option_error

__all__ = ["ParEGO"]

#: samplers ParEGO may drive (single-objective, model-based)
SAMPLERS = ("tpe", "gp")


class ParEGO(Optimizer):
    """Random augmented-Chebyshev scalarizations of several objectives, each searched by ``sampler``.

    Parameters
    ----------
    space : Space
    seed : int, optional
    sampler : {"tpe", "gp"}, default "tpe"
        The single-objective algorithm that searches each scalarization.
    sampler_config : dict, optional
        Its options (e.g. ``{"n_initial": 10}``).
    rho : float, default 0.05
        Weight of the augmentation (the weighted sum added to the Chebyshev maximum), which
        keeps weakly dominated points from scoring as well as the points dominating them.

    Notes
    -----
    Only for experiments with several objectives (it reads :attr:`Trial.values`); a trial
    told without values (one objective) is scalarized as a one-objective vector.  The cost
    of a suggestion is one build of the sampler, one ``tell`` per trial so far and one
    ``ask``: linear in the history, on top of the sampler's own bounded cost.
    """

    name = "parego"
    multi_objective = True

    def __init__(
        self,
        space: Space,
        seed: int | None = None,
        sampler: str = "tpe",
        sampler_config: Mapping[str, Any] | None = None,
        rho: float = 0.05,
    ) -> None:
        super().__init__(space, seed)
        check_option("parego", "sampler", sampler, "choice", choices=SAMPLERS)
        check_option("parego", "rho", rho, low=0)
        if sampler_config is not None and not isinstance(sampler_config, Mapping):
            raise option_error("parego", "sampler_config", f"must be a dict of {sampler}'s options, got {sampler_config!r}")
        self.sampler = sampler
        self.sampler_config = dict(sampler_config or {})
        self.rho = float(rho)
        from . import make_optimizer  # the registry imports this module: imported here, not at the top

        self._make = make_optimizer
        self._inner()  # invalid sampler options fail now, not at the first suggestion
        #: every trial told, in order (the sampler is told them again for each suggestion)
        self._told: list[Trial] = []

    @property
    def config(self) -> dict[str, Any]:
        """The options, as given (stored in the history's attrs)."""
        return {"sampler": self.sampler, "sampler_config": self.sampler_config, "rho": self.rho}

    def _inner(self) -> Optimizer:
        try:
            return self._make((self.sampler, self.sampler_config), self.space, self.seed)
        except ValueError as exc:
            raise option_error("parego", "sampler_config", str(exc)) from None

    def weights(self, trial_id: int, n_objectives: int) -> np.ndarray:
        """The weight vector of trial ``trial_id``'s scalarization: uniform on the simplex."""
        return self.rng_for(trial_id, stream="weights").dirichlet(np.ones(n_objectives))

    def scalarize(self, values: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Augmented Chebyshev values of the rows of ``values`` (minimized), normalized by their range."""
        low, high = values.min(axis=0), values.max(axis=0)
        span = np.where(high > low, high - low, 1.0)
        z = (values - low) / span * weights
        return z.max(axis=1) + self.rho * z.sum(axis=1)

    def ask(self, trial_id: int) -> Suggestion | None:
        """Suggest trial ``trial_id``: the sampler's choice for a fresh random scalarization."""
        inner = self._inner()
        done = [t for t in self._told if t.ok]
        scores = np.zeros(0)
        if done:
            vectors = np.array([t.values or (t.objective,) for t in done], dtype=float)
            scores = self.scalarize(vectors, self.weights(trial_id, vectors.shape[1]))
        score = dict(zip((t.id for t in done), scores))
        for trial in self._told:  # in the order they were told, as the live sampler would have been
            value = float(score[trial.id]) if trial.id in score else float("nan")
            # the scalarized value in place of the vector; metrics and constraints as told
            inner.tell(dataclasses.replace(trial, objective=value, values=()))
        lie = float(scores.max()) if len(scores) else float("nan")
        for pending_id, params in zip(self._pending, self._pending.values()):
            inner.tell(Trial(pending_id, params, "completed" if len(scores) else "lost", lie))
        suggestion = inner.ask(trial_id)
        if suggestion is None:
            return None
        self._pending.add(trial_id, dict(suggestion.params))
        return Suggestion(dict(suggestion.params))

    def tell(self, trial: Trial) -> None:
        """Forget the trial as pending and keep it for the scalarizations to come."""
        self._pending.pop(trial.id, None)
        self._told.append(trial)
