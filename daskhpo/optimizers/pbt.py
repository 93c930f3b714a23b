"""Population based training (Jaderberg et al. 2017), asynchronous.

A population of ``population_size`` members trains in segments of
``perturbation_interval`` steps, each segment one trial that starts from a checkpoint
(:func:`daskhpo.load_checkpoint`).  When a member's segment ends, its next segment is
decided at once from the population's latest scores, without waiting for the others:

* a member ranked in the worst ``quantile_fraction`` **exploits** a member of the best
  ``quantile_fraction`` (drawn at random among those not finished): it continues from that member's checkpoint,
  with that member's hyperparameters **explored**: each is redrawn from its prior with
  probability ``resample_probability``, else (numbers) multiplied by one of
  ``perturbation_factors`` and kept within its bounds;
* any other member continues from its own checkpoint with its own hyperparameters.

Lineage is in the history: ``parent`` is the member's previous segment (so following
``parent`` from any trial gives the member's chain of segments, and the member is its
first trial), ``checkpoint_from`` the trial whose weights it started from (another
member's segment after an exploit).

Segments, two ways:

**A fidelity dimension** (``fidelity(low, high)``: e.g. the epoch to train up to).  A
segment is a trial with that dimension at the member's step plus
``perturbation_interval`` (default: the dimension's ``low``); the objective loads the
checkpoint, trains up to that value and returns the score.  A member is done at ``high``.

**Reports inside the trial** (no fidelity dimension).  Each trial trains to the end, calling
:func:`daskhpo.report` with checkpoints; PBT stops it (``pruned``) once it reported
``perturbation_interval`` steps past where its checkpoint started, and its member goes on
from its last checkpoint in the next trial.  A trial that returns after reporting ends its
member.  Objectives that never report turn PBT into a simple evolutionary search: each
trial is a whole generation of its member.

Decisions depend only on the seed and the order of results, and are rebuilt from the
history on resume (lineage from ``parent``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..space import Categorical, Fidelity, Integer, Real, Space
from ._encoding import complete_params
from .base import CONTINUE, PRUNE, Optimizer, Report, Suggestion, Trial, check_option, option_error

__all__ = ["PBT"]


@dataclass
class _Member:
    index: int
    params: dict[str, Any]
    last_trial: int | None = None
    score: float = math.nan
    step: float = 0.0
    done: bool = False
    reported: bool = False
    history: list[int] = field(default_factory=list)


class PBT(Optimizer):
    """Population based training (see the module documentation).

    Parameters
    ----------
    space : Space
    seed : int, optional
    population_size : int, default 8
        Members trained side by side (and the most trials PBT keeps in flight).
    perturbation_interval : float, optional
        Steps per segment.  Default: the fidelity dimension's ``low``, else 10.
    quantile_fraction : float, default 0.25
        Share of the population that exploits (worst) and is exploited (best).
    resample_probability : float, default 0.25
        Chance that exploring redraws a hyperparameter from its prior.
    perturbation_factors : pair of float, default (0.8, 1.2)
        Factors a numeric hyperparameter is multiplied by when explored.
    """

    name = "pbt"

    def __init__(
        self,
        space: Space,
        seed: int | None = None,
        population_size: int = 8,
        perturbation_interval: float | None = None,
        quantile_fraction: float = 0.25,
        resample_probability: float = 0.25,
        perturbation_factors: Sequence[float] = (0.8, 1.2),
    ) -> None:
        super().__init__(space, seed)
        fid = self.space.fidelity
        self.fidelity = fid.name if fid is not None else None
        if perturbation_interval is None:
            perturbation_interval = fid.low if fid is not None else 10
        check_option("pbt", "population_size", population_size, "int", low=2)
        check_option("pbt", "perturbation_interval", perturbation_interval, low=0, low_open=True)
        check_option("pbt", "quantile_fraction", quantile_fraction, low=0, high=0.5, low_open=True)
        check_option("pbt", "resample_probability", resample_probability, low=0, high=1)
        try:
            factors = tuple(float(f) for f in perturbation_factors)
        except (TypeError, ValueError):
            factors = ()
        if not factors or not all(math.isfinite(f) and f > 0 for f in factors):
            raise option_error(
                "pbt", "perturbation_factors", f"must be a sequence of positive numbers, got {perturbation_factors!r}"
            )
        self.population_size = population_size
        self.perturbation_interval = perturbation_interval
        self.quantile_fraction = quantile_fraction
        self.resample_probability = resample_probability
        self.perturbation_factors = factors
        self.members: list[_Member] = []
        self._ready: deque[int] = deque()
        self._member_of: dict[int, int] = {}  # trial id -> member index (lineage, kept)
        # pending: trial id -> step its checkpoint is at
        self._steps: dict[int, float] = {}  # trial id -> step reached (for exploits)

    @property
    def config(self) -> dict[str, Any]:
        """The options, as given (stored in the history's attrs)."""
        return {
            "population_size": self.population_size,
            "perturbation_interval": self.perturbation_interval,
            "quantile_fraction": self.quantile_fraction,
            "resample_probability": self.resample_probability,
            "perturbation_factors": list(self.perturbation_factors),
        }

    # -- helpers -----------------------------------------------------------------------
    def _segment_end(self, step: float) -> Any:
        dim = self.space[self.fidelity]
        return dim.cast(min(max(step + self.perturbation_interval, dim.low), dim.high))

    def _rank(self) -> tuple[list[int], list[int]]:
        """``(best, worst)`` member indices among members with a score."""
        scored = sorted((m for m in self.members if math.isfinite(m.score)), key=lambda m: (m.score, m.index))
        n = max(1, int(len(scored) * self.quantile_fraction)) if len(scored) >= 2 else 0
        return [m.index for m in scored[:n]], [m.index for m in scored[len(scored) - n:]] if n else []

    def explore(self, params: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """Perturb a configuration (see the module documentation)."""
        out = dict(params)
        for name, dim in self.space.items():
            if isinstance(dim, Fidelity) or name not in params:  # (inactive: nothing to perturb)
                continue
            if rng.random() < self.resample_probability:
                out[name] = dim.sample(rng)
                continue
            factor = self.perturbation_factors[int(rng.integers(len(self.perturbation_factors)))]
            if isinstance(dim, Categorical):
                continue
            value = params[name]
            if isinstance(dim, Integer):
                new = int(round(value * factor))
                if new == value:
                    new = value + (1 if factor > 1 else -1)
                out[name] = int(min(max(new, dim.low), dim.high))
            elif isinstance(dim, Real):
                new = value * factor
                if dim.prior != "normal":
                    new = min(max(new, dim.low), dim.high)
                out[name] = dim.cast(new)
        if self.space.conditional:
            # a resampled parent may activate parameters the source lacked: drawn from their priors
            out = complete_params(self.space, out, rng)
        return out

    # -- protocol ----------------------------------------------------------------------
    def ask(self, trial_id: int) -> Suggestion | None:
        """Start a new member, or the next segment of the member that has waited longest."""
        rng = self.rng_for(trial_id, stream="pbt")
        if len(self.members) < self.population_size:
            params = self.space.sample(self.rng_for(trial_id))
            member = _Member(len(self.members), params)
            self.members.append(member)
            if self.fidelity is not None:
                params[self.fidelity] = self._segment_end(0.0)
            self._member_of[trial_id] = member.index
            self._pending.add(trial_id, 0.0)
            return Suggestion(params)
        if not self._ready:
            return None
        member = self.members[self._ready.popleft()]
        best, worst = self._rank()
        source = member
        # a finished member has nothing left to train from: it is no source
        best = [i for i in best if not self.members[i].done]
        if member.index in worst and best:
            source = self.members[best[int(rng.integers(len(best)))]]
        generational = source.last_trial is not None and math.isnan(self._steps.get(source.last_trial, math.nan))
        if source is not member or (generational and self.fidelity is None):
            params = self.explore(source.params, rng)
        else:
            params = dict(member.params)
        step = source.step
        if self.fidelity is not None:
            params[self.fidelity] = self._segment_end(step)
        self._member_of[trial_id] = member.index
        self._pending.add(trial_id, step)
        return Suggestion(params, parent=member.last_trial, checkpoint=source.last_trial)

    def needed_checkpoints(self) -> set[int]:
        """Each member's last trial: where its next segment (or an exploit) starts from."""
        return {m.last_trial for m in self.members if m.last_trial is not None}

    def _member_for(self, trial: Trial) -> _Member:
        index = self._member_of.get(trial.id)
        if index is None:  # resume, or a trial this instance did not suggest
            index = self._member_of.get(trial.parent) if trial.parent is not None else None
            if index is None and len(self.members) < self.population_size:
                index = len(self.members)
                self.members.append(_Member(index, dict(trial.params)))
            else:
                if index is None:  # no lineage stored: members take turns
                    index = trial.id % self.population_size
                try:  # its member was idle when this trial was asked for
                    self._ready.remove(index)
                except ValueError:
                    pass
            self._member_of[trial.id] = index
        return self.members[index]

    def _merge(self, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        merged = {**old, **new}
        if self.space.conditional:  # what ran decides which parameters exist: no stale inactive ones
            merged = {k: v for k, v in merged.items() if k == self.fidelity or self.space.is_active(k, merged)}
        return merged

    def tell(self, trial: Trial) -> None:
        """Record a segment's outcome with the parameters that ran; its member is ready again."""
        self._pending.pop(trial.id)
        member = self._member_for(trial)
        params = {k: v for k, v in trial.params.items() if k != self.fidelity}
        if member.last_trial is None:
            # nothing trained yet: the member is what ran, even if it was not what PBT
            # suggested (the defaults run as trial 0)
            member.params = self._merge(member.params, params)
        if trial.status in ("completed", "pruned") and math.isfinite(trial.objective):
            member.params = self._merge(member.params, params)
            member.last_trial = trial.id
            member.score = trial.objective
            member.history.append(trial.id)
            if self.fidelity is not None:
                member.step = float(trial.params[self.fidelity])
                member.done = member.step >= self.space[self.fidelity].high
                self._steps[trial.id] = member.step
            else:
                self._steps[trial.id] = trial.last_step
                if math.isfinite(trial.last_step):
                    member.step = trial.last_step
                    member.reported = True
                # a member that reports is done when a trial returns (even one that had
                # nothing left to train); one that never reports goes on in generations
                member.done = trial.status == "completed" and member.reported
        running = any(self._member_of.get(t) == member.index for t in self._pending)
        if not member.done and not running and member.index not in self._ready:
            self._ready.append(member.index)

    def report(self, report: Report) -> str:
        """Stop a segment (reports mode) once it trained ``perturbation_interval`` steps."""
        start = self._pending.get(report.trial_id)
        if self.fidelity is not None or start is None:
            return CONTINUE
        if report.step >= start + self.perturbation_interval:
            return PRUNE
        return CONTINUE
