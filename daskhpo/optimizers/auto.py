"""``algorithm="auto"``: an algorithm picked from the space, the budget and the number of objectives.

The rule (:func:`choose`), from the benchmark rows in ``docs/algorithms.md`` ("Choosing
automatically") and ``benchmarks/results/hpobench.md``; a *small* space is an unconditional one of
at most ``SMALL_MAX_DIMS`` searched parameters, at most half of them categorical:

* several objectives: ``motpe`` (multi-objective TPE);
* a small space and a budget of at most ``GP_MAX_BUDGET`` trials (or an unknown one): ``gp``.
  In ``benchmarks/optimizers.py`` at 100 trials (10 seeds) it has the lowest median regret of
  the daskhpo algorithms on Branin, Ackley-5 and the mixed 4-d problem, sequentially and with 8
  in flight, and sequentially on the four HPOBench data sets it ran on (integer grids); at 200
  trials with 64 in flight it is far ahead of ``cmaes`` and ``tpe`` on Branin, Hartmann-6 and the
  mixed problem (``cmaes`` gets few generations' worth of results there), while sequentially at
  200 trials ``cmaes`` is ahead of it on Hartmann-6 only;
* a small space and a larger budget: ``cmaes``, also with a minority of categoricals (on the
  mixed problem, one categorical of four, it is ahead of ``tpe`` at 200 trials sequentially and
  with 64 in flight).  At 600 trials its regret is 10 to 100,000 times lower than ``tpe``'s on
  Hartmann-6 and Ackley-5, and its suggestions cost a fraction of a millisecond whatever the
  history, where ``gp``'s grow to about 130 ms at 1,000 trials;
* otherwise ``tpe``: conditional spaces (its densities follow the active parameters), many
  dimensions or categories, where a suggestion must stay cheap (about 10 ms at 1,000 trials).

What the rule does not see: the shape of the objective (on Rosenbrock-4D ``tpe`` is about 10x
better than ``gp`` at 100 trials) and the noise of the objective (on HPOBench the searchers'
medians lie within each other's quartiles); ``docs/algorithms.md`` gives the numbers.

The optimizer does not know how many objectives the experiment has until results come in:
it searches with the single-objective choice until the first trial that completes, and if
that trial carries several objective values (:attr:`Trial.values`) it switches to the
multi-objective choice, told every trial so far (before any trial completes, ``gp`` and
``tpe`` draw from the priors anyway).  The switch depends only on the trials told, so a
resumed run makes it at the same point.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ..space import Categorical, Fidelity, Space
from .base import Optimizer, Suggestion, Trial, check_option

__all__ = ["Auto", "choose"]

logger = logging.getLogger(__name__)

#: most searched parameters of a space ``auto`` calls small (``gp`` or ``cmaes``; above: ``tpe``)
SMALL_MAX_DIMS = 10
#: largest budget (trials) for which ``auto`` picks the GP on a small space (above: ``cmaes``);
#: measured: ``gp`` ahead at 100 and 200 trials, ``cmaes`` ahead of ``tpe`` at 600
GP_MAX_BUDGET = 1000
#: the choice for several objectives
MULTI_OBJECTIVE = "motpe"


def choose(space: Space, budget: int | None = None, n_objectives: int = 1) -> str:
    """The algorithm ``auto`` runs for ``space``, ``budget`` and ``n_objectives``.

    Parameters
    ----------
    space : Space
    budget : int, optional
        The number of trials the run is expected to make (``None``: unknown).
    n_objectives : int, default 1

    Returns
    -------
    str
        A registry name.

    Examples
    --------
    >>> choose(Space({"x": "uniform(0, 1)", "y": "uniform(0, 1)"}))
    'gp'
    >>> choose(Space({"x": "uniform(0, 1)"}), budget=5000)
    'cmaes'
    >>> choose(Space({"x": "uniform(0, 1)", "k": "choices(['a', 'b', 'c'])"}), budget=5000)
    'cmaes'
    >>> choose(Space({f"x{i}": "uniform(0, 1)" for i in range(12)}), budget=500)
    'tpe'
    >>> choose(Space({"x": "uniform(0, 1)"}), n_objectives=2)
    'motpe'
    """
    if n_objectives > 1:
        return MULTI_OBJECTIVE
    searched = [d for d in space.values() if not isinstance(d, Fidelity)]
    n_categorical = sum(isinstance(d, Categorical) for d in searched)
    small = not space.conditional and len(searched) <= SMALL_MAX_DIMS and 2 * n_categorical <= len(searched)
    if not small:
        return "tpe"
    return "gp" if budget is None or budget <= GP_MAX_BUDGET else "cmaes"


class Auto(Optimizer):
    """Runs the algorithm :func:`choose` picks.

    The rule: several objectives, ``motpe``; a small space (unconditional, at most 10 searched
    parameters, at most half categorical) and at most ``GP_MAX_BUDGET`` (1,000) trials or an
    unknown budget, ``gp``; a small space and more trials, ``cmaes``; otherwise ``tpe``.  The
    module's documentation and ``docs/algorithms.md`` give the benchmark rows behind it
    (``benchmarks/results/hpobench.md``) and where it misses.

    Parameters
    ----------
    space : Space
    seed : int, optional
    budget : int, optional
        The number of trials expected (``n_trials``); ``None``: unknown.

    Attributes
    ----------
    chosen : str
        The registry name of the algorithm it runs now.
    """

    name = "auto"
    multi_objective = True  # it switches to the multi-objective choice when told objective vectors

    def __init__(self, space: Space, seed: int | None = None, budget: int | None = None) -> None:
        super().__init__(space, seed)
        check_option("auto", "budget", budget, "int", low=1, optional=True)
        self.budget = budget
        from . import make_optimizer  # the registry imports this module: imported here

        self._make = make_optimizer
        self.chosen = choose(self.space, budget)
        self._inner = make_optimizer(self.chosen, self.space, self.seed)
        logger.info("auto: %s for %d parameters, budget %s", self.chosen, len(self.space), budget)
        #: trials told before the first completed one (replayed if the choice switches), until then
        self._told: list[Trial] | None = []

    @property
    def config(self) -> dict[str, Any]:
        """The options, as given (stored in the history's attrs)."""
        return {"budget": self.budget}

    @property
    def fills_idle_slots(self) -> bool:  # type: ignore[override]
        """Whether the chosen algorithm fills idle slots."""
        return self._inner.fills_idle_slots

    @property
    def handles_constraints(self) -> bool:  # type: ignore[override]
        """Whether the chosen algorithm models constraints itself."""
        return self._inner.handles_constraints

    @property
    def pending(self) -> tuple[int, ...]:
        """The chosen algorithm's pending trials, and those asked of the one it replaced."""
        return tuple(self._pending) + self._inner.pending

    def ask(self, trial_id: int) -> Suggestion | None:
        """The chosen algorithm's suggestion."""
        return self._inner.ask(trial_id)

    def ask_batch(self, trial_ids: list[int]) -> list[Suggestion]:
        """The chosen algorithm's suggestions (one model fit for the batch, where it does so)."""
        return self._inner.ask_batch(trial_ids)

    def fill(self, trial_id: int, incumbents: Sequence[Mapping[str, Any]] = ()) -> Suggestion:
        """The chosen algorithm's fill."""
        return self._inner.fill(trial_id, incumbents)

    def report(self, report: Any) -> str:
        """The chosen algorithm's decision."""
        return self._inner.report(report)

    def needed_checkpoints(self) -> set[int] | None:
        """The chosen algorithm's answer."""
        return self._inner.needed_checkpoints()

    def tell(self, trial: Trial) -> None:
        """Tell the chosen algorithm; at the first completed trial, switch if it has several objectives."""
        self._pending.pop(trial.id, None)
        if self._told is not None:
            if trial.ok and len(trial.values) > 1:
                self._switch(choose(self.space, self.budget, len(trial.values)), trial.id)
            if trial.ok:
                self._told = None  # the choice is final
            else:
                self._told.append(trial)
        self._inner.tell(trial)

    def _switch(self, name: str, telling: int) -> None:
        logger.info("auto: several objectives, switching from %s to %s", self.chosen, name)
        for trial_id in self._inner.pending:  # asked of the old choice: pending here until told
            if trial_id != telling:
                self._pending.add(trial_id)
        self.chosen = name
        self._inner = self._make(name, self.space, self.seed)
        for told in self._told or ():
            self._inner.tell(told)
