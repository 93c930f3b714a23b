"""daskhpo.testing: the conformance suite as users run it, and its lazy import of pytest."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import daskhpo.testing

pytest_plugins = ["pytester"]

USER_TESTS = textwrap.dedent(
    '''
    import numpy as np
    import pytest

    import daskhpo.testing
    from daskhpo import Optimizer, Suggestion


    class Nearby(Optimizer):
        """Draws near the best configuration so far (a user's optimizer)."""

        def __init__(self, space, seed=None):
            super().__init__(space, seed)
            self.best = None

        def ask(self, trial_id):
            rng = self.rng_for(trial_id)
            if self.best is None:
                return Suggestion(self.space.sample(rng))
            point = np.clip(self.best[1] + rng.normal(0, 0.05, len(self.space)), 0, 1)
            return Suggestion(self.space.from_unit(point))

        def tell(self, trial):
            if trial.ok and (self.best is None or trial.objective < self.best[0]):
                self.best = (trial.objective, self.space.to_unit(trial.params))


    class Leaky(Nearby):
        """Keeps state for every trial it suggested, forever."""

        def ask(self, trial_id):
            self._pending.add(trial_id)
            return super().ask(trial_id)


    class TestNearby(daskhpo.testing.OptimizerConformance):
        conditional_space = None  # Nearby does not search conditional spaces

        @pytest.fixture
        def make_optimizer(self):
            return lambda space, seed: Nearby(space, seed=seed)


    class TestLeaky(daskhpo.testing.OptimizerConformance):
        conditional_space = None

        @pytest.fixture
        def make_optimizer(self):
            return lambda space, seed: Leaky(space, seed=seed)


    class TestForgotTheFixture(daskhpo.testing.OptimizerConformance):
        pass
    '''
)


def test_subclassing_runs_the_suite_and_catches_faults(pytester):
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "-rfE")
    names = [name for name in dir(daskhpo.testing.OptimizerConformance) if name.startswith("test_")]
    n_tests = len(names) + 1
    n_conditional = len([name for name in names if name.startswith("test_conditional_")])
    assert n_conditional == 3
    failed = [line.split(" ")[1] for line in result.outlines if line.startswith("FAILED ")]
    # the sound optimizer passes every test
    assert not [f for f in failed if "::TestNearby::" in f]
    # the leaky one fails the pending tests, and only those
    leaky = {f.split("::")[-1].split("[")[0] for f in failed if "::TestLeaky::" in f}
    assert leaky == {"test_pending_trials_are_cleaned_up", "test_results_in_any_order", "test_defaults_first_trial",
                     "test_constraints_are_told"}
    # a subclass without the fixture errors on every test, saying what is missing; the two
    # that set conditional_space = None skip the conditional tests, and the multi-objective
    # tests skip these single-objective optimizers
    n_vectors = len([name for name in names if "objective_vectors" in name])
    skipped = 2 * (n_conditional + n_vectors)
    result.assert_outcomes(passed=2 * n_tests - len(failed) - skipped, failed=len(failed), errors=n_tests,
                           skipped=skipped)
    result.stdout.fnmatch_lines(["*TestForgotTheFixture must define a make_optimizer fixture*"])


def test_import_daskhpo_does_not_import_pytest():
    code = "import sys, daskhpo, daskhpo.optimizers; assert 'pytest' not in sys.modules, 'pytest imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
