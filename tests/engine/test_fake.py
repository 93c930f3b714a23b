"""The fake executor keeps the worker's semantics (daskhpo.engine.fake, daskhpo.engine.worker)."""

from __future__ import annotations

import pytest

import daskhpo
from daskhpo.engine import Engine, Executor, FakeExecutor, Planned
from daskhpo.engine.executor import Clocked, Quarantining, Releasing, Wakeable
from daskhpo.engine.worker import TrialTask, cut_short, run_trial
from daskhpo.reporting import decode_checkpoint


def nine_steps(x):
    for step in range(1, 10):
        daskhpo.report(step, objective=x + 10 - step, checkpoint={"step": step})
    return x


def run_one(executor, prune_at=None):
    """One trial of ``nine_steps``; ``prune_at``: the step whose report is decided 'prune'."""
    plans = [Planned(0, {"x": 1.0})]
    recorded = []

    def on_report(report, params):
        return "prune" if report.step == prune_at else "continue"

    Engine(executor, n_workers=1).run(lambda: plans.pop() if plans else None,
                                      lambda trial, checkpoint: recorded.append((trial, checkpoint)),
                                      on_report=on_report)
    (trial, checkpoint), = recorded
    return trial, decode_checkpoint(checkpoint)


def test_the_fake_executor_is_an_executor():
    executor = FakeExecutor(nine_steps)
    assert isinstance(executor, Executor)
    assert isinstance(executor, Quarantining) and isinstance(executor, Clocked)
    assert not isinstance(executor, Wakeable) and not isinstance(executor, Releasing)
    assert not isinstance(object(), Executor)


def test_a_trial_pruned_at_step_4_keeps_its_step_4_checkpoint():
    """What a worker keeps: report(step=4) raises TrialPruned after storing step 4's checkpoint."""
    trial, checkpoint = run_one(FakeExecutor(nine_steps, wait_decisions=True), prune_at=4)
    assert trial.status == "pruned" and trial.last_step == 4
    assert checkpoint == {"step": 4}


def test_an_asynchronous_prune_keeps_the_checkpoint_of_the_report_that_stopped_it():
    trial, checkpoint = run_one(FakeExecutor(nine_steps), prune_at=4)
    assert trial.status == "pruned" and trial.last_step == 5  # stopped at the next report
    assert checkpoint == {"step": 5}


def test_a_timed_out_trial_keeps_the_checkpoint_of_its_last_report_before_the_deadline():
    trial, checkpoint = run_one(FakeExecutor(nine_steps, duration=10.0, trial_timeout=5.0))
    assert trial.status == "timeout" and trial.duration == pytest.approx(5.0)
    # reports at 1, 2, ... 9 virtual seconds: four before the deadline
    assert trial.last_step == 4 and checkpoint == {"step": 4}


def test_cut_short_is_what_the_worker_does():
    task = TrialTask(0, {"x": 1.0}, "k")
    whole = run_trial(nine_steps, task, {}, keep_checkpoints=True)
    cut = cut_short(whole, 3, "pruned")
    assert cut.record.status == "pruned" and cut.record.objective == 1.0 + 10 - 3
    assert [s for s, _ in cut.reports] == [1, 2, 3] and decode_checkpoint(cut.checkpoint) == {"step": 3}
    with pytest.raises(ValueError, match="status"):
        cut_short(whole, 3, "completed")
    with pytest.raises(ValueError, match="keep_checkpoints"):
        cut_short(run_trial(nine_steps, task, {}), 3, "pruned")
