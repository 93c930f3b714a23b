"""``workon(timeout=...)``: an overall time budget; trials in flight finish (or get a grace), then it returns."""

from __future__ import annotations

import json
import time

import pytest

import daskhpo
from daskhpo.engine import Engine, FakeExecutor, Planned
from daskhpo.engine.executor import Completed, Wake
from daskhpo.engine.state import (
    Cancel,
    Finish,
    LoopState,
    RequestSuggestions,
    SetAlarm,
    Start,
    Submit,
)
from daskhpo.engine.worker import TrialOutcome
from daskhpo.records import TrialRecord
from tests.engine.state_driver import answer, feed

SPACE = {"x": "uniform(0, 1)"}


def square(x):
    return x * x


def sessions(exp):
    return [s["reason"] for s in json.loads(exp.attrs["driver_sessions"])]


# -- the state machine ---------------------------------------------------------------------------
def done(key, trial):
    record = TrialRecord(trial, {"x": trial}, "completed", objective=1.0, worker="w0")
    return Completed(key, TrialOutcome(record, [], None))


@pytest.mark.parametrize("grace", [None, 0.0, 1.0])
def test_the_state_machine_stops_submitting_at_the_timeout_and_finishes_as_the_grace_says(grace):
    state = LoopState(n_workers=2, quarantine_after=None, timeout=10.0, timeout_grace=grace)
    plans = iter(Planned(t, {"x": t}) for t in range(100))
    out = answer(state, feed(state, Start(), 0.0), plans, 0.0)
    assert out[0] == SetAlarm(10.0)  # wakes the loop at the budget even if no trial ends before
    a, b = [i for i in out if isinstance(i, Submit)]
    (c,) = [i for i in answer(state, feed(state, done(a.key, 0), 4.0), plans, 4.0) if isinstance(i, Submit)]
    out = feed(state, Wake(), 10.0)  # the alarm: the budget is spent
    assert not any(isinstance(i, (Submit, RequestSuggestions)) for i in out) and state.timed_out
    if grace == 0.0:
        assert sorted(i.key for i in out if isinstance(i, Cancel)) == sorted([b.key, c.key])
        assert isinstance(out[-1], Finish) and out[-1].timeout and out[-1].abandoned == [1, 2]
        return
    assert not any(isinstance(i, Finish) for i in out)
    assert (SetAlarm(1.0) in out) == (grace == 1.0)  # a grace has its own deadline; None waits
    out = feed(state, done(b.key, 1), 10.5)  # finishes within any grace: recorded, nothing new
    assert [type(i).__name__ for i in out] == ["Record"]
    out = feed(state, Wake(), 11.0) if grace == 1.0 else feed(state, done(c.key, 2), 30.0)
    assert isinstance(out[-1], Finish) and out[-1].timeout and out[-1].drained.reason == "timeout=10 s"
    assert out[-1].abandoned == ([2] if grace == 1.0 else [])


# -- the fake executor, in virtual time ----------------------------------------------------------
def test_timeout_on_the_fake_executor_lets_trials_in_flight_finish_saves_and_returns(tmp_path):
    exp = daskhpo.build_experiment("t", SPACE, storage=str(tmp_path / "t.nc"), seed=0)
    executor = FakeExecutor(square, duration=1.0, slots=4)
    exp.run(executor, max_trials=10_000, timeout=10.5)  # returns normally
    records = exp.records()
    # 4 slots of 1 s: 40 trials end by t=10; the 4 started at t=10 end at t=11, after the budget
    assert len(records) == 44 and {r.status for r in records} == {"completed"}
    assert executor.now == pytest.approx(11.0) and len(executor.submitted) == 44
    assert sessions(exp) == ["timeout: 10.5 s"]
    exp.close()
    assert len(daskhpo.load_experiment(str(tmp_path / "t.nc")).records()) == 44  # saved


def test_timeout_grace_cancels_what_runs_past_it_and_a_resume_goes_on(tmp_path):
    exp = daskhpo.build_experiment("t", SPACE, storage=str(tmp_path / "t.nc"), seed=0)
    executor = FakeExecutor(square, duration=1.0, slots=4)
    exp.run(executor, max_trials=10_000, timeout=10.5, timeout_grace=0)
    assert len(exp.records()) == 40 and executor.now == pytest.approx(10.5)  # the 4 in flight are not recorded
    assert sessions(exp) == ["timeout: 10.5 s"]
    exp.run(FakeExecutor(square, duration=1.0, slots=4), max_trials=50)
    assert len(exp.records()) == 50 and sessions(exp) == ["completed"]  # one session per process: its last end
    exp.close()


def test_a_run_that_ends_before_its_timeout_is_a_plain_run():
    engine = Engine(FakeExecutor(square, duration=1.0, slots=2), timeout=100.0)
    plans = iter(Planned(i, {"x": 0.5}) for i in range(6))
    assert engine.run(lambda: next(plans, None), lambda rec, ck: None) == 6
    assert not engine.timed_out and engine.drained is None


def test_bad_timeouts_are_refused_naming_the_argument_before_a_cluster_starts():
    exp = daskhpo.build_experiment("t", SPACE, seed=0)
    for kwargs, name in [({"timeout": 0}, "timeout"), ({"timeout": -1.0}, "timeout"), ({"timeout": "1h"}, "timeout"),
                         ({"timeout": float("inf")}, "timeout"), ({"timeout_grace": -1}, "timeout_grace"),
                         ({"max_broken": "never"}, "max_broken")]:
        with pytest.raises(ValueError, match=name):
            exp.workon(square, max_trials=5, **kwargs)  # no client given: it would start one


# -- a real cluster ---------------------------------------------------------------------------------
def slow_square(x):
    time.sleep(0.2)
    return x * x


def test_timeout_on_a_real_cluster_returns_normally_with_what_finished(client, tmp_path):
    exp = daskhpo.build_experiment("real", SPACE, storage=str(tmp_path / "real.nc"), seed=0)
    started = time.monotonic()
    exp.workon(slow_square, max_trials=100_000, client=client, timeout=1.5, progress=False)
    elapsed = time.monotonic() - started
    records = exp.records()
    assert 1 <= len(records) < 1000 and {r.status for r in records} == {"completed"}
    assert sessions(exp) == ["timeout: 1.5 s"]
    assert elapsed < 30  # the budget, a trial in flight and the save; generous for a loaded machine
    exp.close()
    assert len(daskhpo.load_experiment(str(tmp_path / "real.nc")).records()) == len(records)
