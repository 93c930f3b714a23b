"""``max_broken``: a run stops when the objective looks broken, not when some configurations fail."""

from __future__ import annotations

import math
import random

import pytest

from daskhpo import TooManyBrokenTrials, build_experiment
from daskhpo.engine import FakeExecutor
from daskhpo.engine.broken import BrokenPolicy, check_max_broken
from daskhpo.engine.executor import Completed
from daskhpo.engine.state import (
    Ended,
    LoopState,
    Planned,
    Raise,
    Record,
    RequestSuggestions,
    Start,
    Submit,
    Suggested,
)
from daskhpo.engine.worker import TrialOutcome
from daskhpo.records import TrialRecord


# -- the policy alone --------------------------------------------------------------------------
def outcomes(policy, finished):
    """Feed ``finished`` (booleans) to ``policy``; the index of the outcome that stopped it, or None."""
    for i, ok in enumerate(finished):
        policy.observe(ok)
        if policy.verdict() is not None:
            return i
    return None


@pytest.mark.parametrize("n_workers", [1, 4, 32])
@pytest.mark.parametrize("share", [1 / 3, 1 / 2])
def test_auto_never_stops_a_search_where_part_of_the_space_fails(n_workers, share):
    rng = random.Random(0)
    for _ in range(50):
        # the worst case for the first outcomes: failures fast, so each slot's first ones fail
        first = [False] * round(n_workers * share / (1 - share))
        stream = first + [rng.random() >= share for _ in range(2000)]
        assert outcomes(BrokenPolicy("auto", n_workers), stream) is None


def test_a_rate_measured_on_few_outcomes_does_not_stop_a_run_where_most_trials_fail():
    # 7 finished and 10 broken, then 20 in a row: at the 59 % measured, a streak of 20 would be
    # a 1-in-57,000 event; at the 80 % that may be true, it is not (the upper bound is used)
    assert outcomes(BrokenPolicy("auto", 1), [True, False, False] * 5 + [True, True] + [False] * 20) is None


@pytest.mark.parametrize("n_workers", [1, 4, 32])
def test_auto_stops_an_objective_broken_from_the_start_at_its_floor(n_workers):
    policy = BrokenPolicy("auto", n_workers)
    assert outcomes(policy, [False] * 1000) == 10 + 2 * n_workers - 1
    assert "none finished" in policy.verdict() and f"{10 + 2 * n_workers} trials broke" in policy.verdict()


def test_auto_stops_an_objective_that_broke_mid_run_and_waits_longer_where_failures_are_common():
    healthy_then_broken = [True] * 100 + [False] * 1000
    policy = BrokenPolicy("auto", 2)
    assert outcomes(policy, healthy_then_broken) == 100 + 14 - 1  # the floor: 10 + 2 * 2
    assert "the last 14 in a row after 100 finished" in policy.verdict()
    # where nine in ten trials break, a streak of 14 is ordinary: it takes far longer
    common = [i % 10 == 0 for i in range(1000)] + [False] * 1000
    stopped = outcomes(BrokenPolicy("auto", 2), common)
    assert stopped is not None and 1000 + 100 < stopped < 1000 + 200


def test_an_int_keeps_its_meaning_and_none_or_inf_never_stop():
    assert outcomes(BrokenPolicy(3, 8), [True, False, True, False, False, True, False]) == 6
    assert outcomes(BrokenPolicy(0, 8), [True, False]) == 1
    assert outcomes(BrokenPolicy(None, 1), [False] * 10_000) is None
    assert check_max_broken(math.inf) is None and check_max_broken("auto") == "auto" and check_max_broken(0) == 0
    for bad in (-1, 2.5, "never", True, math.nan):
        with pytest.raises(ValueError, match="max_broken"):
            check_max_broken(bad)


# -- in the state machine ----------------------------------------------------------------------
def feed(state, event, now=0.0):
    return state.handle(event, now=now, wall=1000.0 + now)


def run_all(state, trials):
    """Start ``state`` with plans of ``trials`` (plain suggestions); the submits."""
    plans = iter(Planned(t, {"x": t}) for t in trials)
    return answer(state, feed(state, Start()), plans)


def answer(state, todo, plans):
    out = []
    while todo:
        instruction = todo.pop(0)
        out.append(instruction)
        if isinstance(instruction, RequestSuggestions):
            plan = next(plans, None)
            todo = feed(state, Suggested(() if plan is None else (plan,), nothing=plan is None)) + todo
    return out


def outcome(key, trial, ok, worker="w0", error="MemoryError: Unable to allocate 3.1 GiB"):
    record = TrialRecord(trial, {"x": trial}, "completed" if ok else "broken", objective=1.0 if ok else math.nan,
                         worker=worker, error=None if ok else error)
    return Completed(key, TrialOutcome(record, [], None))


def test_the_default_state_machine_goes_on_past_three_broken_trials_and_stops_a_broken_objective():
    state = LoopState(n_workers=1, quarantine_after=None)  # the defaults: max_broken="auto"
    plans = iter(Planned(t, {"x": t}) for t in range(100))
    out = answer(state, feed(state, Start()), plans)
    for trial in range(11):  # 3 was the old limit; the floor is 10 + 2 * 1
        (submit,) = [i for i in out if isinstance(i, Submit)]
        out = answer(state, feed(state, outcome(submit.key, trial, ok=False)), plans)
        assert not any(isinstance(i, Raise) for i in out), trial
    (submit,) = [i for i in out if isinstance(i, Submit)]
    out = answer(state, feed(state, outcome(submit.key, 11, ok=False)), plans)
    assert isinstance(out[-1], Raise) and isinstance(out[-1].error, TooManyBrokenTrials)
    assert str(out[-1].error).startswith("12 trials broke in this run and none finished")


def test_max_broken_none_never_stops():
    state = LoopState(n_workers=2, max_broken=None, quarantine_after=None)
    plans = iter(Planned(t, {"x": t}) for t in range(1000))
    out = answer(state, feed(state, Start()), plans)
    for _ in range(300):
        submit = next(i for i in out if isinstance(i, Submit))
        out = [i for i in out if i is not submit]
        out += answer(state, feed(state, outcome(submit.key, submit.plan.trial, ok=False)), plans)
        assert not any(isinstance(i, Raise) for i in out)
    assert state.broken == 300 and not state.done


def test_the_message_counts_what_the_history_holds_held_trials_included():
    # w0 and w2 break trials held by the quarantine; w0 then finishes one: its two are recorded
    # broken, over max_broken=1.  The trial still held for w2 is recorded before the run stops.
    state = LoopState(n_workers=4, max_broken=1, quarantine_after=3)
    a, b, c, d = [i for i in run_all(state, range(4)) if isinstance(i, Submit)]
    assert feed(state, outcome(a.key, 0, ok=False, worker="w0")) == [RequestSuggestions(1)]
    assert feed(state, outcome(b.key, 1, ok=False, worker="w0")) == [RequestSuggestions(1)]
    assert feed(state, outcome(c.key, 2, ok=False, worker="w2")) == [RequestSuggestions(1)]
    out = feed(state, outcome(d.key, 3, ok=True, worker="w0"))
    records = [i.trial for i in out if isinstance(i, Record)]
    assert sorted((r.trial, r.status) for r in records) == [(0, "broken"), (1, "broken"), (2, "broken"),
                                                            (3, "completed")]
    assert isinstance(out[-1], Raise) and str(out[-1].error).startswith("3 trials broke (max_broken=1) in this run")
    assert feed(state, Ended()) == []  # nothing left to record after the error


def test_a_third_of_the_space_failing_reaches_max_trials_with_default_settings():
    def oom_or_nan(x, layers):
        if layers == 5:
            if x < 0:
                raise MemoryError(f"CUDA out of memory with {layers} layers: tried to allocate {1 + x:.2f} GiB")
            return math.nan
        return x * x

    space = {"x": "uniform(-1, 1)", "layers": "choices([3, 4, 5])"}
    exp = build_experiment("third", space, algorithm="random", seed=3)
    # failures are fast (a tenth of a success): the first outcomes of each slot are failures
    executor = FakeExecutor(oom_or_nan, duration=lambda p: 0.1 if p["layers"] == 5 else 1.0, workers=4)
    exp.run(executor, max_trials=200)
    records = exp.records()
    assert sum(r.status == "completed" for r in records) == 200
    broken = [r for r in records if r.status == "broken"]
    assert len(broken) > 60 and all(r.params["layers"] == 5 for r in broken)
    assert executor.quarantined == [] and exp.quarantined == []


def test_a_broken_objective_still_stops_with_the_default():
    def typo(x):
        return undefined_name * x  # noqa: F821

    exp = build_experiment("typo", {"x": "uniform(-1, 1)"}, seed=0)
    with pytest.raises(TooManyBrokenTrials, match="none finished.*NameError") as raised:
        exp.run(FakeExecutor(typo, workers=2), max_trials=50)
    broke = int(str(raised.value).split()[0])
    assert 10 + 2 * 2 <= broke <= 10 + 2 * 2 + 3 + 2  # the floor, or the batch of held trials that passed it
    assert len(exp.records()) == broke  # what the message counts is what the history holds
