"""The protocol every registered algorithm must honour, through :mod:`daskhpo.testing`.

Every name in :func:`daskhpo.optimizers.available` runs through the conformance suite; an
algorithm needing options for it (or declaring that it is deterministic) says so in
``CONFIG`` / ``SEED_INDEPENDENT``.  A small user-defined optimizer passes the suite by
subclassing, and broken ones fail it: the suite catches faults.
"""

from __future__ import annotations

import numpy as np
import pytest

from daskhpo.optimizers import Optimizer, Suggestion, Trial, available, make_optimizer
from daskhpo.space import Space
from daskhpo.testing import CONDITIONAL_SPACE, SPACE, OptimizerConformance

# Options per algorithm for these tests, and algorithms whose suggestions ignore the seed.
# (The suite checks the protocol, not the search's quality: gp searches its acquisition
# function more cheaply here, a third of its CPU time in these tests.)
CONFIG: dict[str, dict] = {
    "grid": {"n_values": 4}, "pbt": {"perturbation_interval": 2}, "gp": {"n_candidates": 200, "n_starts": 2},
}
SEED_INDEPENDENT = {"grid"}


class TestRegistered(OptimizerConformance):
    """Every registered algorithm, with the options of ``CONFIG``."""

    @pytest.fixture(params=available())
    def algorithm(self, request) -> str:
        return request.param

    @pytest.fixture
    def make_optimizer(self, algorithm):
        return lambda space, seed: make_optimizer((algorithm, CONFIG.get(algorithm, {})), space, seed)

    @pytest.fixture
    def ignores_seed(self, algorithm) -> bool:
        return algorithm in SEED_INDEPENDENT

    def test_name_is_the_registry_name(self, make_optimizer, algorithm):
        assert make_optimizer(SPACE, 0).name == algorithm


class TestRegisteredWithFidelity(TestRegistered):
    """The same with a fidelity dimension: multi-fidelity algorithms search it themselves
    (ASHA and Hyperband promote, PBT trains in segments), the others run at its maximum."""

    space = Space({**SPACE.to_dict(), "epochs": "fidelity(1, 27, 3)"})
    conditional_space = Space({**CONDITIONAL_SPACE.to_dict(), "epochs": "fidelity(1, 27, 3)"})

    # gp encodes the fidelity as tpe and evolution do (at its maximum); left out for time
    @pytest.fixture(params=[a for a in available() if a != "gp"])
    def algorithm(self, request) -> str:
        return request.param


# -- a user's optimizer ------------------------------------------------------------------------


class LocalSearch(Optimizer):
    """Random draws, then Gaussian steps (in the unit cube) from the best configuration so far."""

    name = "local-search"

    def __init__(self, space, seed=None, n_initial=5):
        super().__init__(space, seed)
        self.n_initial, self.best = n_initial, None  # best: (objective, unit point)

    def ask(self, trial_id):
        rng = self.rng_for(trial_id)
        if self.best is None or trial_id < self.n_initial:
            params = self.space.sample(rng)
        else:
            params = self.space.from_unit(np.clip(self.best[1] + rng.normal(0, 0.1, len(self.space)), 0, 1))
            params = self.space.validate(params)  # in a conditional space: only the active ones
        self._pending.add(trial_id)  # nothing to remember but that it runs
        return Suggestion(params)

    def tell(self, trial):
        self._pending.pop(trial.id)
        if trial.ok and (self.best is None or (trial.objective, trial.id) < self.best[::2]):
            # an inactive parameter is at the middle of its range, should a step activate it
            unit = [d.to_unit(trial.params[n]) if n in trial.params else 0.5 for n, d in self.space.items()]
            self.best = (trial.objective, np.array(unit), trial.id)


class TestUserOptimizer(OptimizerConformance):
    """What a user writes to check an optimizer of their own."""

    @pytest.fixture
    def make_optimizer(self):
        return lambda space, seed: LocalSearch(space, seed=seed)


# -- broken optimizers fail the suite -----------------------------------------------------------


class LeaksPending(LocalSearch):
    """Forgets to clear the pending state of trials that did not complete."""

    def tell(self, trial):
        if trial.ok:
            super().tell(trial)


class GlobalRandom(LocalSearch):
    """Draws from numpy's global generator: neither seeded nor reproducible."""

    def ask(self, trial_id):
        self._pending.add(trial_id)
        return Suggestion(self.space.sample(np.random.default_rng()))


class OutOfBounds(LocalSearch):
    """Suggests values outside the space once it has a best point."""

    def ask(self, trial_id):
        suggestion = super().ask(trial_id)
        return Suggestion({**suggestion.params, "x": 99.0}) if self.best is not None else suggestion


class FailsOnForeignTrials(LocalSearch):
    """Assumes every told trial was suggested by itself (breaks on resume and defaults)."""

    def tell(self, trial):
        if trial.id not in self._pending:
            raise KeyError(trial.id)
        super().tell(trial)


class SetsInactive(LocalSearch):
    """Steps in the unit cube and returns every parameter, those its choices make inactive too."""

    def ask(self, trial_id):
        suggestion = super().ask(trial_id)
        if self.best is None:
            return suggestion
        return Suggestion(self.space.from_unit(np.clip(self.best[1], 0, 1)))


class SameEveryTime(LocalSearch):
    """Ignores pending trials: eight trials in flight get one point."""

    def ask(self, trial_id):
        self._pending.add(trial_id)
        if self.best is None:
            return Suggestion(self.space.sample(self.rng_for(trial_id)))
        return Suggestion(self.space.from_unit(self.best[1]))


@pytest.mark.parametrize(
    "broken, test",
    [
        (LeaksPending, "test_pending_trials_are_cleaned_up"),
        (LeaksPending, "test_results_in_any_order"),
        (GlobalRandom, "test_same_seed_and_results_give_same_suggestions"),
        (GlobalRandom, "test_resume_from_history_continues_the_same_run"),
        (OutOfBounds, "test_suggestions_are_valid_configurations"),
        (FailsOnForeignTrials, "test_told_trials_it_never_suggested"),
        (FailsOnForeignTrials, "test_resume_from_history_continues_the_same_run"),
        (SameEveryTime, "test_parallel_suggestions_are_distinct"),
        (SetsInactive, "test_conditional_suggestions_hold_only_active_parameters"),
        (SetsInactive, "test_conditional_told_trials_it_never_suggested"),
    ],
)
def test_a_broken_optimizer_fails_the_suite(broken, test):
    suite = TestUserOptimizer()
    with pytest.raises((AssertionError, KeyError, ValueError)):
        getattr(suite, test)(lambda space, seed: broken(space, seed=seed))
    # the same test passes for the sound optimizer it was broken from
    getattr(suite, test)(lambda space, seed: LocalSearch(space, seed=seed))


def test_defaults_first_is_caught_for_an_optimizer_that_trusts_its_suggestion():
    """An optimizer that records what it suggested instead of what ran fails the suite."""

    class TrustsSuggestion(LocalSearch):
        def ask(self, trial_id):
            suggestion = super().ask(trial_id)
            self._pending.add(trial_id, suggestion.params)
            return suggestion

        def tell(self, trial):
            suggested = self._pending.get(trial.id)
            assert suggested is None or suggested == trial.params, "told params it did not suggest"
            super().tell(trial)

    suite = TestUserOptimizer()
    with pytest.raises(AssertionError):
        suite.test_defaults_first_trial(lambda space, seed: TrustsSuggestion(space, seed=seed), "completed")


def test_pending_is_read_only_and_empty_for_stateless_algorithms():
    opt = make_optimizer("random", SPACE, 0)
    opt.ask(0)
    assert opt.pending == ()  # random search keeps nothing per running trial
    tpe = make_optimizer("tpe", SPACE, 0)
    tpe.ask(0)
    assert tpe.pending == (0,)
    tpe.tell(Trial(0, SPACE.sample(np.random.default_rng(0)), "lost"))
    assert tpe.pending == ()
