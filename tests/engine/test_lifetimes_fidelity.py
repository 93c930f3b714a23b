"""The expected run time per fidelity (daskhpo.engine.lifetimes): the rule, admission event by
event, then end to end on the fake cluster with a multi-fidelity mix and with ASHA."""

from __future__ import annotations

import math

import pytest

import daskhpo
from daskhpo.engine.executor import Completed, Started, WorkersChanged
from daskhpo.engine.fake_lifetimes import FakeLifetimeExecutor
from daskhpo.engine.lifetimes import Lifetimes
from daskhpo.engine.loop import Engine
from daskhpo.engine.state import LoopState, Planned, RequestSuggestions, Submit, Suggested
from daskhpo.engine.worker import TrialOutcome
from daskhpo.records import TrialRecord

WALL = 1000.0


def feed(state, event, now=0.0):
    return state.handle(event, now=now, wall=WALL + now)


def learned(points, **settings):
    life = Lifetimes(**settings)
    for duration, fidelity in points:
        life.observe(duration, fidelity)
    return life


# trials of 10 s per epoch, give or take a second
MIX = [(10.0, 1), (11.0, 1), (9.0, 1), (10.5, 1), (29.0, 3), (31.0, 3), (30.0, 3)]


# -- the rule ----------------------------------------------------------------------------------
def test_run_time_that_grows_with_the_fidelity_is_learned_per_fidelity():
    life = learned(MIX)
    assert life.model is not None
    assert life.expected == pytest.approx(31.0 * 1.25 + 5.0)  # one number for all: the long ones'
    assert life.expected_at(1) < 25.0  # a short trial needs about 10 s (with its margin)
    assert 110.0 < life.expected_at(9) < 140.0  # never seen: 90 s by the line, with its margin
    assert life.shortest == life.expected_at(1)
    assert life.expected_for(ran=20.0, fidelity=9) == pytest.approx(life.expected_at(9) - 20.0)


@pytest.mark.parametrize("points", [
    MIX[:5],  # too few trials
    [(10.0, 1)] * 4 + [(12.0, 1)] * 4,  # one fidelity
    [(10.0, 1), (30.0, 1), (12.0, 3), (28.0, 3), (20.0, 1), (21.0, 3)],  # flat: lost in the noise
    [(30.0, 1), (31.0, 1), (29.0, 1), (10.0, 3), (11.0, 3), (9.0, 3)],  # shorter at a higher fidelity
])
def test_without_a_clear_rise_in_the_data_the_single_estimate_is_used(points):
    life = learned(points)
    assert life.model is None
    assert life.expected_at(1) == life.expected_at(100) == life.expected


def test_per_fidelity_can_be_turned_off_and_trials_without_a_fidelity_get_the_single_estimate():
    assert learned(MIX, per_fidelity=False).model is None
    life = learned(MIX)
    assert life.expected_at(None) == life.expected


def test_running_trials_widen_the_spread_as_lower_bounds():
    life = learned(MIX)
    before = life.expected_at(3)
    life.estimate([(80.0, 3)], now=0.0)  # a trial at fidelity 3 has run 80 s already
    assert life.expected_at(3) > 80.0 > before


@pytest.mark.parametrize("name, value", [
    ("quantile", 0.0), ("quantile", 1.5), ("margin", 0.5), ("slack", -1.0), ("wait", math.nan),
    ("min_left", "60"), ("window", 2), ("per_fidelity", 1),
])
def test_bad_settings_name_the_parameter(name, value):
    with pytest.raises(ValueError, match=rf"Lifetimes: {name} must"):
        Lifetimes(**{name: value})


def test_a_run_takes_only_a_lifetimes_object():
    with pytest.raises(ValueError, match="lifetimes must be a daskhpo.Lifetimes"):
        daskhpo.build_experiment("l", {"x": "uniform(0, 1)"}).run(
            FakeLifetimeExecutor(lambda x: x, workers=1, lifetime=100.0), 1, lifetimes={"margin": 2})


# -- admission, event by event -------------------------------------------------------------------
def completed(key, trial, epochs, duration):
    record = TrialRecord(trial, {"epochs": epochs}, "completed", objective=1.0, worker="a",
                         started=WALL, ended=WALL + duration)
    return Completed(key, TrialOutcome(record, [], None))


def learn_mix(state):
    """Run the trials of MIX one by one on worker "a" (each submitted after the last ended)."""
    now = 0.0
    for trial, (duration, epochs) in enumerate(MIX):
        out = feed(state, Suggested((Planned(trial, {"epochs": epochs}),)), now)
        (sub,) = [i for i in out if isinstance(i, Submit)]
        feed(state, Started(sub.key, "a"), now)
        now += duration
        out = feed(state, completed(sub.key, trial, epochs, duration), now)
        assert [i for i in out if isinstance(i, RequestSuggestions)]  # its slot is free again
    return now


def submitted_to(state, epochs, now, trial=100):
    out = feed(state, Suggested((Planned(trial, {"epochs": epochs}),)), now)
    (sub,) = [i for i in out if isinstance(i, Submit)]
    return sub.workers


def test_a_long_high_fidelity_trial_is_kept_off_a_worker_that_fits_only_the_short_ones():
    state = LoopState(n_workers=1, run="r", fidelity="epochs")
    feed(state, WorkersChanged({"a": WALL + 100_000.0, "ending": WALL + 100_000.0}))
    now = learn_mix(state)
    feed(state, WorkersChanged({"a": WALL + 100_000.0, "ending": WALL + now + 100.0}), now)
    # one number for all would be 31 * 1.25 + 5 = 43.75 s < 100 s: the 90-s trial would start there
    assert submitted_to(state, 9, now) == ("a",)


def test_a_short_trial_may_start_on_a_worker_a_long_one_would_not_fit():
    state = LoopState(n_workers=1, run="r", fidelity="epochs", lifetimes=Lifetimes(min_left=10.0))
    feed(state, WorkersChanged({"a": WALL + 100_000.0, "ending": WALL + 100_000.0}))
    now = learn_mix(state)
    feed(state, WorkersChanged({"a": WALL + 100_000.0, "ending": WALL + now + 30.0}), now)
    # one number for all (43.75 s) would keep it off "ending", which has 30 s: it takes 10
    assert set(submitted_to(state, 1, now)) == {"a", "ending"}
    # the soft lifetime too: "ending" stays while the shortest trial fits it
    assert not state.life.to_retire(WALL + now, state.life.shortest, ["a"], [])


# -- end to end on the fake cluster ----------------------------------------------------------------
def run_mix(per_fidelity):
    """Two workers, "1" ends at 220 s; trials of 10 s per epoch, as ASHA's rungs mix them."""
    records = []
    executor = FakeLifetimeExecutor(lambda x, epochs: x, duration=lambda p: 10.0 * p["epochs"], workers=2,
                                    lifetime=lambda w: 220.0 if w == "fake-worker-1" else 100_000.0, grace=5.0)
    epochs = [1, 1, 1, 3, 1, 1, 3, 1, 1, 9, 1, 1, 3, 1, 9] + [1] * 30
    plans = iter(Planned(i, {"x": float(i), "epochs": e}) for i, e in enumerate(epochs))
    lifetimes = Lifetimes(per_fidelity=per_fidelity, min_left=15.0)
    Engine(executor, retries=1, fidelity="epochs", lifetimes=lifetimes).run(
        lambda: next(plans, None), lambda r, c: records.append(r))
    assert len(records) == len(epochs) and all(r.status == "completed" for r in records)
    return executor, [r for r in records if r.worker == "fake-worker-1"]


def test_per_fidelity_neither_starts_long_trials_where_they_are_killed_nor_keeps_short_ones_off():
    single, single_on_1 = run_mix(per_fidelity=False)
    per, per_on_1 = run_mix(per_fidelity=True)
    # one number (the short trials' time, early on): the 90-s trial 14 started at 130 s on
    # worker 1, killed at its end (220 s) and run again; per fidelity it waits for worker 0
    assert single.killed == 1 and per.killed == 0
    assert [(r.trial, r.params["epochs"]) for r in per_on_1 if r.params["epochs"] == 9] == []
    # one number (the long trials' time, later): worker 1 got no trial after 120 s; per
    # fidelity it kept running the 10-s ones until its last minute, and the run ended sooner
    assert max(r.started for r in single_on_1) <= 120.0
    assert max(r.started for r in per_on_1) >= 190.0 and len(per_on_1) >= len(single_on_1) + 5
    assert per.now < single.now


def test_asha_through_the_experiment_learns_per_fidelity_from_the_space():
    def run(per_fidelity):
        exp = daskhpo.build_experiment("asha", {"x": "uniform(0, 1)", "epochs": "fidelity(1, 27, base=3)"},
                                       algorithm="asha", seed=1)
        executor = FakeLifetimeExecutor(lambda x, epochs: (x - 0.3) ** 2 + 1.0 / epochs, workers=2,
                                        duration=lambda p: 3.0 * p["epochs"], grace=5.0,
                                        lifetime=lambda w: 600.0 if w == "fake-worker-1" else 100_000.0)
        exp.run(executor, 150, lifetimes=Lifetimes(per_fidelity=per_fidelity, min_left=10.0))
        return executor, exp.records()

    single, _ = run(per_fidelity=False)
    per, records = run(per_fidelity=True)
    assert {r.params["epochs"] for r in records} == {1, 3, 9, 27}
    # the run told the engine the space's fidelity: a long trial killed at the walltime with one number only
    assert single.killed == 1 and per.killed == 0
    assert all(r.attempts == 1 for r in records)
