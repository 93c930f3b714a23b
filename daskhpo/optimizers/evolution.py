"""Regularized (aging) evolution: a steady-state evolutionary algorithm.

The population is the ``population_size`` most recently completed trials.  Each suggestion
is the mutated copy of a tournament winner (the best of ``tournament_size`` members drawn
at random), so every completed trial can produce a child at once, with no generations to
wait for: the algorithm is asynchronous by nature.  Old members leave the population as new
ones arrive (aging), which keeps it from clinging to one lucky trial.

Mutation works per dimension type: real and integer dimensions take a Gaussian step in
their unit coordinates (so ``loguniform`` dimensions move on the log scale and ``normal``
ones in quantiles), reflected at the bounds; an integer that would not move is nudged by one
value; a categorical dimension switches to another choice, drawn from its prior.

In a conditional space only a parent's active parameters mutate; a parameter that a
mutated choice activates is drawn from its prior, and one it deactivates is dropped.

With several objectives (an experiment's ``objectives=``; trials told with
:attr:`Trial.values <daskhpo.optimizers.Trial.values>`) it becomes a steady-state NSGA-II
(Deb et al. 2002, in its one-child-at-a-time form): members are ranked by non-dominated
sorting, then by crowding distance within their front; the winners of two tournaments,
by (rank, crowding distance), are recombined by uniform crossover before the shared
mutation; and survival is elitist instead of aging: when a new trial joins a full
population, the member of the last front with the smallest crowding distance leaves (the
oldest among equals).  On ZDT1 (30 variables, 300 trials) the crossover took the
hypervolume from random search's level to above Optuna's NSGA-II
(``benchmarks/results/multiobjective.md``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..pareto import crowding_distance, non_dominated_sort
from ..space import Space
from ._encoding import Encoding
from .base import Optimizer, Suggestion, Trial, check_option

logger = logging.getLogger(__name__)


def _reflect(u: np.ndarray) -> np.ndarray:
    """Fold values back into ``[0, 1]`` by reflection at the bounds."""
    u = np.mod(u, 2.0)
    return np.where(u > 1.0, 2.0 - u, u)


class Evolution(Optimizer):
    """Regularized evolution with tournament selection.

    Parameters
    ----------
    space : Space
    seed : int, optional
    population_size : int, default 10
        Completed trials in the population (the most recent ones; with several objectives
        the best by Pareto rank and crowding distance); until there are that many,
        suggestions are random draws from the priors.
    tournament_size : int, default 5
        Members drawn for each tournament; the best one is the parent.
    mutation_scale : float, default 0.05
        Standard deviation of the Gaussian step, in unit coordinates.
    mutation_rate : float, optional
        Probability that each dimension mutates (at least one always does); by default
        ``1 / n_dims`` with a floor of 0.3.

    Notes
    -----
    Pending trials need little handling: each suggestion draws its own tournament and
    mutation from the trial's random stream, and a child identical to a pending or living
    configuration is mutated again (up to ten times).  Trials that did not complete do not
    enter the population.
    """

    name = "evolution"
    multi_objective = True  # NSGA-II-style selection and survival when told several objectives

    def __init__(
        self,
        space: Space,
        seed: int | None = None,
        population_size: int = 10,
        tournament_size: int = 5,
        mutation_scale: float = 0.05,
        mutation_rate: float | None = None,
    ) -> None:
        super().__init__(space, seed)
        check_option("evolution", "population_size", population_size, "int", low=2)
        check_option("evolution", "tournament_size", tournament_size, "int", low=1, high=population_size)
        check_option("evolution", "mutation_scale", mutation_scale, low=0, high=1, low_open=True)
        check_option("evolution", "mutation_rate", mutation_rate, low=0, high=1, low_open=True, optional=True)
        self.population_size = population_size
        self.tournament_size = tournament_size
        self.mutation_scale = float(mutation_scale)
        self.mutation_rate = None if mutation_rate is None else float(mutation_rate)
        self._enc = Encoding(self.space)
        n_dims = self._enc.n_num + self._enc.n_cat
        self._rate = self.mutation_rate if self.mutation_rate is not None else max(1.0 / max(n_dims, 1), 0.3)
        # The population, oldest first: (unit coordinates, choice indices, objective); with
        # several objectives the third item is the vector of minimized values.
        self._population: list[tuple[np.ndarray, np.ndarray, Any]] = []
        # with several objectives: (rank, -crowding distance) of each member, by position
        self._fitness: list[tuple[int, float]] | None = None

    @property
    def config(self) -> dict[str, Any]:
        """The options, as given (stored in the history's attrs)."""
        return {
            "population_size": self.population_size,
            "tournament_size": self.tournament_size,
            "mutation_scale": self.mutation_scale,
            "mutation_rate": self.mutation_rate,
        }

    @property
    def population(self) -> list[dict[str, Any]]:
        """The current population's configurations, oldest first."""
        return [self._enc.decode(num, cat) for num, cat, _ in self._population]

    def ask(self, trial_id: int) -> Suggestion:
        """Suggest trial ``trial_id``: a prior draw, or a tournament winner's mutated copy."""
        rng = self.rng_for(trial_id)
        if len(self._population) < self.population_size:
            num, cat = self._enc.random(rng, 1)
            self._pending.add(trial_id, self._key(num[0], cat[0]))
            return Suggestion(self._enc.decode(num[0], cat[0]))
        members = rng.choice(len(self._population), size=self.tournament_size, replace=False)
        if self._fitness is not None:
            fitness = self._fitness
            parent = min(members, key=lambda i: (*fitness[i], i))
            # NSGA-II recombines two tournament winners: uniform crossover, then mutation
            others = rng.choice(len(self._population), size=self.tournament_size, replace=False)
            mate = self._population[min(others, key=lambda i: (*fitness[i], i))]
            start = self._crossover(self._population[parent], mate, rng)
        else:
            parent = min(members, key=lambda i: (self._population[i][2], i))
            start = self._population[parent][:2]
        # A child identical to a running or living configuration is mutated again (a few times).
        taken = set(self._pending.values()) | {self._key(m[0], m[1]) for m in self._population}
        for _ in range(10):
            num, cat = self.mutate(start[0], start[1], rng)
            if self._key(num, cat) not in taken:
                break
        self._pending.add(trial_id, self._key(num, cat))
        return Suggestion(self._enc.decode(num, cat))

    def _crossover(self, a: tuple, b: tuple, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Each dimension from either parent, with equal chance."""
        take = rng.random(self._enc.n_num + self._enc.n_cat) < 0.5
        num = np.where(take[: self._enc.n_num], b[0], a[0])
        cat = np.where(take[self._enc.n_num :], b[1], a[1])
        return num, cat

    @staticmethod
    def _key(num: np.ndarray, cat: np.ndarray) -> bytes:
        return num.tobytes() + cat.tobytes()

    def mutate(
        self, num: np.ndarray, cat: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """A mutated copy of an encoded configuration."""
        enc = self._enc
        n_dims = enc.n_num + enc.n_cat
        chosen = rng.random(n_dims) < self._rate
        mutable = [j for j in range(n_dims) if j < enc.n_num or enc.cat_sizes[j - enc.n_num] > 1]
        if enc.conditional:  # only the parent's active parameters mutate
            present = np.concatenate([~np.isnan(num), cat >= 0])
            mutable = [j for j in mutable if present[j]]
            chosen &= present
        if mutable and not chosen[mutable].any():
            chosen[rng.choice(mutable)] = True
        num, cat = num.copy(), cat.copy()
        if enc.n_num:
            step = rng.normal(size=enc.n_num) * self.mutation_scale
            moved = enc.snap(_reflect(num + step))
            for j, cells in enc.int_cells.items():
                # an integer that rounds back to its own value moves by one value instead
                if chosen[j] and moved[j] == num[j] and len(cells.centers) > 1:
                    i = int(cells.index(num[j : j + 1])[0])
                    i = i + 1 if (step[j] > 0 and i + 1 < len(cells.centers)) or i == 0 else i - 1
                    moved[j] = cells.centers[i]
            num = np.where(chosen[: enc.n_num], moved, num)
        for j, prior in enumerate(enc.cat_priors):
            if chosen[enc.n_num + j] and len(prior) > 1:
                p = prior.copy()
                p[cat[j]] = 0.0
                if p.sum() > 0:
                    cat[j] = rng.choice(len(p), p=p / p.sum())
        if enc.conditional:  # parameters the new choices activate come from their priors
            num, cat = enc.complete(num, cat, rng)
        return num, cat

    def tell(self, trial: Trial) -> None:
        """Forget the trial as pending; a completed trial joins the population (the oldest leaves)."""
        self._pending.pop(trial.id, None)
        if not trial.ok:
            return
        encoded = self._enc.encode(trial.params)
        if encoded is None:
            logger.warning("evolution: trial %s has parameters outside the space; ignored", trial.id)
            return
        if trial.values:
            self._population.append((encoded[0], encoded[1], np.array(trial.values, dtype=float)))
            self._survive()
            return
        self._population.append((encoded[0], encoded[1], float(trial.objective)))
        if len(self._population) > self.population_size:
            self._population.pop(0)

    def _survive(self) -> None:
        """NSGA-II survival: a full population drops its most crowded member of the last front."""
        while True:
            values = np.array([m[2] for m in self._population])
            rank = non_dominated_sort(values)
            crowding = np.zeros(len(values))
            for r in np.unique(rank):
                front = np.flatnonzero(rank == r)
                crowding[front] = crowding_distance(values[front])
            self._fitness = [(int(r), -float(c)) for r, c in zip(rank, crowding)]
            if len(self._population) <= self.population_size:
                return
            # the worst by (rank, -crowding); among equals the oldest (lowest position) leaves
            worst = max(range(len(self._population)), key=lambda i: (*self._fitness[i], -i))
            self._population.pop(worst)
