"""Racing (``algorithm="race"``): the F-Race test on data whose outcome is known, the race's
decisions on constructed reports, option errors, maximize, and a run on a real Dask cluster."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import daskhpo
from daskhpo.engine import FakeExecutor
from daskhpo.optimizers import CONTINUE, PRUNE, Optimizer, Report, Suggestion, Trial, make_optimizer
from daskhpo.optimizers.race import Race, race_test

SPACE = daskhpo.Space({"q": "uniform(0, 1)"})


def conover(scores: np.ndarray, alpha: float) -> list[int]:
    """Conover's post-hoc rule written out from the textbook form (with T), for comparison."""
    b, k = scores.shape
    ranks = stats.rankdata(scores, axis=1)
    R = ranks.sum(0)
    A, C = (ranks**2).sum(), b * k * (k + 1) ** 2 / 4
    T = (k - 1) * ((R - b * (k + 1) / 2) ** 2).sum() / (A - C)
    critical = stats.t.ppf(1 - alpha / 2, (b - 1) * (k - 1)) * math.sqrt(
        2 * b * (1 - T / (b * (k - 1))) * (A - C) / ((b - 1) * (k - 1)))
    best = int(np.argmin(R))
    return [j for j in range(k) if R[j] - R[best] > critical]


# -- the test itself --------------------------------------------------------------------------


def test_consistent_ranking_prunes_every_other_configuration():
    scores = np.array([[1.0, 2.0, 3.0]] * 5) + np.arange(5)[:, None]  # instance difficulty differs
    best, worse, p = race_test(scores, 0.05)
    assert (best, worse) == (0, [1, 2])
    assert p == pytest.approx(stats.friedmanchisquare(*scores.T).pvalue)
    assert p == pytest.approx(math.exp(-5))  # T = 10 on 2 degrees of freedom


def test_post_hoc_separates_only_what_the_evidence_separates():
    # ranks of A, B, C, D on 8 instances: A and B trade first place, C and D trail
    ranks = np.array([[1, 2, 3, 4], [2, 1, 3, 4], [1, 2, 4, 3], [2, 1, 3, 4],
                      [1, 3, 2, 4], [1, 2, 3, 4], [2, 1, 4, 3], [1, 2, 3, 4]], dtype=float)
    scores = ranks * 0.1 + np.arange(8)[:, None]  # instance difficulty does not matter
    best, worse, p = race_test(scores, 0.05)
    assert p < 0.001  # Friedman T = 18.15 on 3 degrees of freedom
    # rank sums 11, 14, 25, 30; critical difference t(0.975, 21) * sqrt(2 * 78 / 21) = 5.67
    assert (best, worse) == (0, [2, 3])
    assert worse == conover(scores, 0.05)  # the same rule as the textbook form with T


def test_nothing_is_pruned_without_significance():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(5, 4))  # no real difference
    best, worse, p = race_test(scores, 0.05)
    assert p > 0.05 and worse == []
    assert race_test(np.ones((6, 3)), 0.05) == (0, [], 1.0)  # every instance a tie


def test_two_configurations_use_the_exact_wilcoxon_test():
    # 6 instances all won by one side: exact two-sided p = 2 / 2**6
    assert race_test(np.array([[1.0, 2.0]] * 6), 0.05) == (0, [1], pytest.approx(2 / 64))
    assert race_test(np.array([[2.0, 1.0]] * 6), 0.05) == (1, [0], pytest.approx(2 / 64))
    # 5 instances cannot reach 0.05 (2 / 32): the race waits for more evidence
    assert race_test(np.array([[1.0, 2.0]] * 5), 0.05)[1] == []


def test_fast_statistics_equal_scipys():
    from daskhpo.optimizers.race import _ranks, _wilcoxon

    rng = np.random.default_rng(7)
    for shape in [(5, 3), (6, 7), (10, 40)]:
        for scores in (rng.normal(size=shape), np.round(rng.normal(size=shape))):  # with ties too
            assert np.array_equal(_ranks(scores)[0], stats.rankdata(scores, axis=1))
            if race_test(scores, 0.05)[2] < 1:
                assert race_test(scores, 0.05)[2] == pytest.approx(stats.friedmanchisquare(*scores.T).pvalue)
    for n in (5, 6, 9, 20):
        diff = rng.normal(0.5, 1, size=n)
        assert _wilcoxon(diff) == pytest.approx(stats.wilcoxon(diff).pvalue, abs=1e-12)
    diff = np.array([1.0, 1.0, -2.0, 3.0, 0.0, 4.0, 5.0])  # ties and a zero: scipy's own
    assert _wilcoxon(diff) == pytest.approx(stats.wilcoxon(diff).pvalue)


# -- the race's decisions ---------------------------------------------------------------------


def feed(race: Race, trial: int, scores, start: int = 1) -> list[str]:
    return [race.report(Report(trial, {"q": 0.5}, float(i), float(s))) for i, s in enumerate(scores, start)]


def complete(race: Race, trial: int, scores) -> list[str]:
    decisions = feed(race, trial, scores)
    race.tell(Trial(trial, {"q": 0.5}, "completed", float(np.mean(scores)), last_step=float(len(scores))))
    return decisions


ALTERNATE = np.array([0.1, -0.1] * 5)  # wins every other instance against the plain profile


def test_a_worse_configuration_is_pruned_at_first_test_not_before():
    race = Race(SPACE, seed=0, sampler="random", instances=8, first_test=5)
    difficulty = np.linspace(0, 1, 8)
    assert complete(race, 0, difficulty + 0.0) == [CONTINUE] * 8
    assert complete(race, 1, difficulty + ALTERNATE[:8]) == [CONTINUE] * 8  # as good as 0
    decisions = feed(race, 2, difficulty + 5.0)
    assert decisions[:4] == [CONTINUE] * 4  # hopeless, but no test before first_test
    # 5 instances, 3 configurations, rank sums 7, 8, 15: Friedman p = 0.022, critical
    # difference 3.99: 2 is worse than the best (0), 1 is not
    assert decisions[4] == PRUNE
    assert race.status(2) == "pruned" and race.status(1) == "completed"
    assert feed(race, 2, [5.0], start=6) == [PRUNE]  # a report after the decision: still pruned
    assert race.incumbent == 0


def test_an_infeasible_configuration_leaves_the_race():
    """Good scores of an infeasible trial (told with the experiment's penalty) neither make it
    the best nor count against others; the sampler hears the penalty."""
    race = Race(SPACE, seed=0, sampler="random", instances=6, first_test=5)
    feed(race, 0, np.full(6, 6.0))
    race.tell(Trial(0, {"q": 0.5}, "completed", 6.0, last_step=6.0))
    feed(race, 1, np.full(6, 2.0))
    race.tell(Trial(1, {"q": 0.5}, "completed", 100.0, last_step=6.0, constraints=(1.0,)))
    assert race.incumbent == 0 and race.status(1) != "completed"
    # worse than 1 on every instance, better than 0: raced against 0 alone, it goes on
    assert feed(race, 2, np.full(6, 4.0)) == [CONTINUE] * 6


def test_two_configurations_need_six_instances_at_alpha_005():
    race = Race(SPACE, seed=0, sampler="random", instances=8, first_test=5)
    complete(race, 0, np.zeros(8))
    # exact Wilcoxon: all 5 instances worse gives p = 0.0625, all 6 gives 0.031
    assert feed(race, 1, np.ones(8)) == [CONTINUE] * 5 + [PRUNE] * 3


def test_configurations_are_compared_on_the_instances_they_share():
    race = Race(SPACE, seed=0, sampler="random", instances=10, first_test=5)
    difficulty = np.arange(10.0)
    complete(race, 0, difficulty)
    complete(race, 1, difficulty + ALTERNATE)
    feed(race, 3, difficulty[:2] - 1.0)  # started late: 2 instances so far, better than everyone
    # 2 is worse than 0 and 1 on each of its 5 instances: pruned; the running 3, better than
    # all, is not in its block (running configurations are compared with completed ones)
    assert feed(race, 2, difficulty[:5] + 2.0)[-1] == PRUNE
    assert race.status(3) == "running"
    # 3 is the best of {0, 1, 3} at its 5th instance: it goes on; its test decides only for it
    assert feed(race, 3, difficulty[2:5] - 1.0, start=3) == [CONTINUE] * 3
    assert race.status(0) == race.status(1) == "completed"
    assert race.incumbent == 0
    # once 3 completes, its test over all 10 instances removes 0 and 1 from the race
    feed(race, 3, difficulty[5:] - 1.0, start=6)
    race.tell(Trial(3, {"q": 0.5}, "completed", float(np.mean(difficulty - 1.0)), last_step=10.0))
    assert race.status(0) == race.status(1) == "eliminated"
    assert race.incumbent == 3
    # a newcomer is now raced against 3 alone: the exact Wilcoxon test needs 6 instances
    assert feed(race, 4, difficulty[:6]) == [CONTINUE] * 5 + [PRUNE]


def test_nothing_is_pruned_before_a_configuration_completes():
    race = Race(SPACE, seed=0, sampler="random", instances=8, first_test=5)
    feed(race, 0, np.zeros(7))
    assert feed(race, 1, np.ones(8) * 10) == [CONTINUE] * 8  # 0 still runs: no evidence to race against


def test_a_configuration_as_good_as_the_best_survives():
    race = Race(SPACE, seed=0, sampler="random", instances=10, first_test=5)
    complete(race, 0, [1, 2, 1, 2, 1, 2, 1, 2, 1, 2])
    # wins half the instances against 0: never significantly worse
    assert complete(race, 1, [2, 1, 2, 1, 2, 1, 2, 1, 2, 1]) == [CONTINUE] * 10
    assert race.status(1) == "completed"


class Recording(Optimizer):
    """A random sampler that keeps what it is told."""

    name = "recording"

    def __init__(self, space, seed=None):
        super().__init__(space, seed)
        self.told: list[Trial] = []

    def ask(self, trial_id):
        return Suggestion(self.space.sample(self.rng_for(trial_id)))

    def tell(self, trial):
        self.told.append(trial)


def test_the_sampler_learns_means_and_estimates_for_pruned_configurations():
    sampler = Recording(SPACE, seed=0)
    race = Race(SPACE, seed=0, sampler=sampler, instances=6, first_test=3)
    difficulty = np.array([0.0, 4.0, 0.0, 4.0, 0.0, 4.0])
    complete(race, 0, difficulty + 1.0)
    complete(race, 1, difficulty + 2.0)
    feed(race, 2, difficulty[:3] + 3.0)  # pruned at 3 (easy, hard, easy instances)
    race.tell(Trial(2, {"q": 0.5}, "pruned", 3.0, last_step=3.0))
    race.tell(Trial(3, {"q": 0.5}, "broken"))
    told = {t.id: t for t in sampler.told}
    assert told[0].objective == pytest.approx(3.0) and told[1].objective == pytest.approx(4.0)
    assert race.status(2) == "pruned"
    # additive model: 2 is 1.5 worse than the instance means on its instances; those average 3.5
    assert told[2].status == "completed" and told[2].objective == pytest.approx(5.0)
    assert told[2].objective > race.mean(2)  # its own mean (11/3) would flatter it: easy instances
    assert told[3].status == "broken"
    assert race.pending == ()


def test_a_returned_objective_that_is_not_the_mean_is_flagged(caplog):
    race = Race(SPACE, seed=0, sampler="random", instances=5, first_test=5)
    feed(race, 0, [1, 2, 3, 4, 5])
    race.tell(Trial(0, {"q": 0.5}, "completed", 5.0, last_step=5.0))  # the last score, not the mean
    assert "mean of its 5 reported scores is 3" in caplog.text
    assert race.estimate(0) == 3.0


@pytest.mark.parametrize(
    "options, option",
    [
        ({"instances": 1}, "instances"),
        ({"instances": 2.5}, "instances"),
        ({"first_test": 1}, "first_test"),
        ({"instances": 6, "first_test": 7}, "first_test"),
        ({"alpha": 0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"sampler": "asha"}, "sampler"),
        ({"sampler": "race"}, "sampler"),
        ({"sampler": "no-such-algorithm"}, "no-such-algorithm"),
    ],
)
def test_invalid_options_name_the_option(options, option):
    with pytest.raises(ValueError, match=option):
        make_optimizer(("race", {"sampler": "random", **options}), SPACE, 0)


def test_config_round_trips():
    race = make_optimizer(("race", {"sampler": ("tpe", {"n_initial": 4}), "instances": 6, "first_test": 3}), SPACE, 0)
    assert race.config == {"sampler": ["tpe", {"n_initial": 4}], "instances": 6, "first_test": 3, "alpha": 0.05}
    assert make_optimizer(("race", race.config), SPACE, 0).config == race.config


# -- through the engine -----------------------------------------------------------------------

INSTANCES = 8


def noisy(q: float, instances: int = INSTANCES, wait: bool = False, sign: float = 1.0) -> float:
    """True value ``q`` (times ``sign``); each instance adds its own difficulty and seeded noise."""
    scores = []
    for i in range(1, instances + 1):
        noise = np.random.default_rng([i, int(q * 2**32)]).normal(0, 0.05)
        scores.append(sign * (q + 0.3 * math.sin(i) + noise))
        daskhpo.report(i, objective=scores[-1], wait=wait)
    return float(np.mean(scores))


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_race_follows_the_direction(direction):
    # to maximize, the same problem upside down: the best configuration has the lowest q
    sign = 1.0 if direction == "minimize" else -1.0
    exp = daskhpo.build_experiment("race", {"q": "uniform(0, 1)"}, seed=1, direction=direction,
                                   algorithm=("race", {"sampler": "random", "instances": INSTANCES, "first_test": 4}))
    exp.run(FakeExecutor(noisy, slots=4, fn_kwargs={"sign": sign}), max_trials=40)
    records = exp.records()
    pruned = [r for r in records if r.status == "pruned"]
    completed = [r for r in records if r.status == "completed"]
    assert len(pruned) >= 10 and completed
    best = exp.best
    assert best["trial"] == exp.optimizer.incumbent
    lowest = min(r.params["q"] for r in records)
    assert best["params"]["q"] < lowest + 0.02  # the best up to the noise of a mean of 8 instances
    # the pruned configurations are the bad ones (q is the true value), stopped early
    assert min(r.params["q"] for r in pruned) > best["params"]["q"] - 0.02
    assert np.mean([r.params["q"] for r in pruned]) > np.mean([r.params["q"] for r in completed]) + 0.2
    assert np.median([r.last_step for r in pruned]) <= 6  # the first test is at 4; one more runs


def test_waiting_decisions_save_the_step_after_a_prune():
    def run(wait):
        exp = daskhpo.build_experiment("race", {"q": "uniform(0, 1)"}, seed=1,
                                       algorithm=("race", {"sampler": "random", "instances": INSTANCES, "first_test": 4}))
        exp.run(FakeExecutor(noisy, slots=4, wait_decisions=wait), max_trials=30)
        return {r.trial: r for r in exp.records() if r.status == "pruned"}

    later, waited = run(False), run(True)
    # the same reports before the first prune, so the same first pruned trial
    first = min(later)
    assert first in waited and waited[first].last_step == later[first].last_step - 1


class LoggedRace(Race):
    """A race that keeps its decisions (trial, step, decision)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log: list[tuple[int, float, str]] = []

    def report(self, report):
        decision = super().report(report)
        self.log.append((report.trial_id, report.step, decision))
        return decision


def test_race_on_a_dask_cluster(client):
    race = LoggedRace(SPACE, seed=2, sampler="tpe", instances=INSTANCES, first_test=4)
    exp = daskhpo.build_experiment("race-dask", {"q": "uniform(0, 1)"}, seed=2, algorithm=race)
    exp.workon(noisy, max_trials=24, client=client, wait=True)
    records = exp.records()
    pruned = [r for r in records if r.status == "pruned"]
    assert pruned, "nothing pruned"
    best = exp.best
    assert best["trial"] == race.incumbent
    # the pruned are truly worse (q is the true value), up to the noise of a few instances
    assert min(r.params["q"] for r in pruned) > best["params"]["q"] - 0.05
    # each report waited for its decision: a pruned trial stopped at the very report the race
    # pruned (without wait=True it runs one more instance), and reported nothing after it
    first_prune = {}
    for trial, step, decision in race.log:
        if decision == PRUNE:
            first_prune.setdefault(trial, step)
    for r in pruned:
        assert r.last_step == first_prune[r.trial] >= 4
        assert [p.step for p in exp.reports(r.trial)] == [float(i) for i in range(1, int(r.last_step) + 1)]
