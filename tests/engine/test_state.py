"""The loop's decisions, event by event (daskhpo.engine.state): no executor, no thread, no clock."""

from __future__ import annotations

import pytest

from daskhpo.engine.drain import DrainRequest
from daskhpo.engine.errors import NoWorkersError, SchedulerLostError, TooManyBrokenTrials
from daskhpo.engine.executor import Completed, Failed, NoWorkers, Reported, Rerun, Wake
from daskhpo.engine.state import (
    Cancel,
    Decided,
    DrainRequested,
    Ended,
    Finish,
    Idle,
    LoopState,
    Planned,
    Prune,
    Raise,
    Record,
    Release,
    Report,
    RequestSuggestions,
    SetAlarm,
    Start,
    Submit,
    Suggested,
    TakeSuggestions,
    WaitForModel,
)
from daskhpo.engine.worker import TrialOutcome
from daskhpo.records import TrialRecord
from tests.engine.state_driver import feed


def completed(key, trial, status="completed", worker="w0", reports=()):
    record = TrialRecord(trial, {"x": trial}, status, objective=1.0 if status == "completed" else float("nan"),
                         worker=worker, error=None if status == "completed" else "RuntimeError: boom")
    return Completed(key, TrialOutcome(record, list(reports), None))


def start(state, trials):
    """Start ``state`` (plain suggestions), answering its requests with ``trials`` plans; the submits."""
    plans = iter(Planned(t, {"x": t}) for t in trials)
    out, todo = [], feed(state, Start())
    while todo:
        instruction = todo.pop(0)
        out.append(instruction)
        if isinstance(instruction, RequestSuggestions):
            plan = next(plans, None)
            todo = feed(state, Suggested(() if plan is None else (plan,), nothing=plan is None)) + todo
    return [i for i in out if isinstance(i, Submit)]


def test_plain_suggestions_fill_every_slot_one_by_one_and_stop_at_nothing():
    state = LoopState(n_workers=3, run="r")
    submits = start(state, range(10))
    assert [s.plan.trial for s in submits] == [0, 1, 2] and all(s.attempt == 1 for s in submits)
    assert len({s.key for s in submits}) == 3 and all(s.key.startswith("daskhpo-trial-") for s in submits)
    assert start(LoopState(n_workers=3), range(1)) and not LoopState(n_workers=3).jobs


def test_a_finished_trial_is_recorded_with_its_submission_and_frees_its_slot():
    state = LoopState(n_workers=1)
    (submit,) = start(state, [7])
    out = feed(state, completed(submit.key, 7), now=5.0)
    assert isinstance(out[0], Record) and out[0].trial.submitted == 1000.0 and out[0].trial.attempts == 1
    assert out[1:] == [RequestSuggestions(1)] and state.finished == 1 and not state.jobs


def test_a_lost_attempt_is_retried_then_recorded_lost():
    state = LoopState(n_workers=1, retries=1)
    (submit,) = start(state, [0])
    (again,) = feed(state, Failed(submit.key, "KilledWorker"))
    assert isinstance(again, Submit) and again.attempt == 2 and again.key != submit.key
    out = feed(state, Failed(again.key, "KilledWorker"))
    assert out[0].trial.status == "lost" and "after 2 attempts" in out[0].trial.error
    assert feed(state, Failed(submit.key, "late")) == []  # an attempt given up: nothing


def test_a_broken_transport_is_not_retried():
    state = LoopState(n_workers=1, retries=3, quarantine_after=None)
    (submit,) = start(state, [0])
    out = feed(state, Failed(submit.key, "cannot unpickle", lost=False))
    assert out[0].trial.status == "broken" and out[0].trial.error == "cannot unpickle"


def test_cluster_reruns_count_as_attempts_and_are_bounded():
    state = LoopState(n_workers=1, retries=1)
    (submit,) = start(state, [0])
    assert feed(state, Rerun(submit.key)) == []
    assert feed(state, Rerun(submit.key)) == [Cancel(submit.key)]
    out = feed(state, Failed(submit.key, "CancelledError"))
    assert out[0].trial.status == "lost" and "each of 2 attempts" in out[0].trial.error


def test_too_many_broken_trials_raise_after_they_are_recorded():
    state = LoopState(n_workers=2, max_broken=1, quarantine_after=None)
    a, b = start(state, [0, 1])
    assert not any(isinstance(i, Raise) for i in feed(state, completed(a.key, 0, "broken")))
    out = feed(state, completed(b.key, 1, "broken"))
    assert isinstance(out[0], Record) and isinstance(out[-1], Raise) and isinstance(out[-1].error, TooManyBrokenTrials)
    assert state.done and feed(state, Wake()) == []


def test_no_workers_and_a_lost_scheduler_end_the_run():
    state = LoopState(n_workers=1)
    start(state, [0])
    (out,) = feed(state, NoWorkers(60.0))
    assert type(out.error) is NoWorkersError
    state = LoopState(n_workers=1)
    start(state, [0])
    (out,) = feed(state, NoWorkers(60.0, scheduler="tcp://s:8786"))
    assert type(out.error) is SchedulerLostError and "tcp://s:8786" in str(out.error)


def test_reports_are_handed_on_once_and_a_waiting_trial_is_released_or_pruned():
    state = LoopState(n_workers=1, reports=True)
    (submit,) = start(state, [0])
    (report,) = feed(state, Reported(submit.key, 0, 1.0, {"objective": 3.0}, "w0", wait=True))
    assert isinstance(report, Report) and report.report.step == 1.0 and report.decide
    assert feed(state, Decided(0, None, key=submit.key)) == []  # decided later: the trial waits
    assert feed(state, Decided(0, "continue")) == [Release(submit.key, "w0", 1.0)]
    assert feed(state, Reported(submit.key, 0, 1.0, {}, "w0")) == []  # a repeated step: nothing to decide
    feed(state, Reported(submit.key, 0, 2.0, {}, "w0", wait=True))
    assert feed(state, Decided(0, "prune", key=submit.key)) == [Prune(submit.key, "w0")]
    assert feed(state, Decided(0, "prune")) == []  # pruned once


def test_reports_that_came_with_the_end_are_handed_on_before_the_record():
    state = LoopState(n_workers=1, reports=True)
    (submit,) = start(state, [0])
    out = feed(state, completed(submit.key, 0, reports=[(2.0, {}), (1.0, {})]))
    assert [(type(i), getattr(i, "decide", None)) for i in out[:3]] == [(Report, False), (Report, False), (Record, None)]
    assert [i.report.step for i in out[:2]] == [1.0, 2.0]


def test_the_budget_counts_finished_trials():
    state = LoopState(n_workers=4, budget=2, quarantine_after=None)
    submits = start(state, range(10))
    assert len(submits) == 2
    out = feed(state, completed(submits[0].key, 0, "broken"))
    assert out[-1] == RequestSuggestions(1)  # a broken trial does not use up the budget
    (third,) = [i for i in feed(state, Suggested((Planned(2, {}),))) if isinstance(i, Submit)]
    assert feed(state, completed(submits[1].key, 1))[1:] == []  # one finished, one running: the budget's 2
    assert [type(i) for i in feed(state, completed(third.key, 2))] == [Record] and not state.active


def test_a_drain_waits_its_grace_then_cancels_and_finishes():
    state = LoopState(n_workers=2)
    a, b = start(state, [0, 1])
    request = DrainRequest("test", 2.0, 0.0)
    assert feed(state, DrainRequested(request), now=1.0) == [SetAlarm(2.0)]
    assert [type(i) for i in feed(state, completed(a.key, 0), now=2.0)] == [Record]  # nothing submitted
    out = feed(state, Wake(), now=3.0)
    assert out == [Cancel(b.key), Finish(request, [1])] and state.done and not state.active


def test_a_model_is_taken_from_then_asked_and_held_when_it_has_nothing():
    state = LoopState(n_workers=3, model=True)
    assert feed(state, Start()) == [TakeSuggestions()]
    assert feed(state, Suggested(())) == [RequestSuggestions(3)]
    out = feed(state, Suggested((Planned(0, {}),), outstanding=2, requested=True))
    assert [type(i) for i in out] == [Submit] and state.free_slots() == 0 and state.active
    assert feed(state, Idle()) == []  # something runs: the driver waits for its events instead
    state = LoopState(n_workers=1, model=True)
    feed(state, Start())
    assert feed(state, Suggested((), nothing=True)) == [] and state.hold
    assert feed(state, Wake()) == [TakeSuggestions(ask_nothing=False)]


def test_nothing_running_with_the_model_owing_trials_waits_for_it():
    state = LoopState(n_workers=1, model=True)
    feed(state, Start())
    feed(state, Suggested((), outstanding=1))
    assert feed(state, Idle()) == [WaitForModel(0.1), TakeSuggestions()]


def test_held_broken_trials_are_recorded_when_the_run_ends():
    state = LoopState(n_workers=2, quarantine_after=3)
    a, _ = start(state, [0, 1])
    assert [type(i) for i in feed(state, completed(a.key, 0, "broken"))] == [RequestSuggestions]  # held
    (record,) = feed(state, Ended())
    assert record.trial.trial == 0 and record.trial.status == "broken"


def test_unknown_events_are_refused():
    with pytest.raises(TypeError, match="unknown event"):
        feed(LoopState(n_workers=1), object())
