"""The production suggester path in virtual time (FakeModelExecutor), and the decision stall.

A decision posted while the model thread is in a batch used to wait for the next request
for trials (the model thread woke only for requests): ``report(wait=30)`` got its answer
after 5.2 s instead of 0.2 s, and with no further request the trial ran on undecided.
"""

from __future__ import annotations

import threading

import pytest

import daskhpo
from daskhpo.engine import Engine, Planned, Suggester
from daskhpo.engine.fake import FakeModelExecutor

#: virtual seconds each trial runs, by trial id: 0 ends early (its end requests a trial)
DURATIONS = {0: 1.0, 1: 20.0, 2: 100.0}


def reporting(x):
    for step in range(1, 10):  # trial 1: a report every 2 virtual seconds
        daskhpo.report(step, objective=x)
    return x


def stall_scenario(model_seconds=2.5):
    """Trial 1 reports at t=4.5 while the batch begun at t=3.5 (trial 0's end) runs until t=6."""
    executor = FakeModelExecutor(reporting, duration=lambda p: DURATIONS[p["x"]], model_seconds=model_seconds,
                                 wait_decisions=True)
    ids = iter(range(3))
    decided_at = {}

    def suggest_batch(k):
        return [Planned(i, {"x": i}) for i in (next(ids, None) for _ in range(k)) if i is not None]

    model = Suggester(suggest_batch)
    engine = Engine(executor, n_workers=2)

    def decide(report):
        decided_at[report.trial, report.step] = executor.now
        engine.decide_later(report.trial, "prune" if report.trial == 1 else "continue")
        model.on_ready()

    def on_report(report, params):
        model.post(decide, report)  # as the experiment does: decided after what was posted before
        return None

    records = {}
    engine.run(model, lambda rec, ck: records.setdefault(rec.trial, rec), on_report=on_report)
    return executor, records, decided_at


def test_the_model_runs_its_batches_in_virtual_time():
    executor, records, _ = stall_scenario()
    # t=0..2.5: the first batch (trials 0 and 1); t=3.5..6: the batch trial 0's end (t=3.5) asked for
    assert [(start, end, k) for start, end, k in executor.batches][:2] == [(0.0, 2.5, 2), (3.5, 6.0, 1)]
    assert records[0].status == "completed" and records[0].started == 2.5


def test_a_decision_posted_during_a_batch_is_made_when_the_batch_ends():
    executor, records, decided_at = stall_scenario()
    # posted at t=4.5 (the report), made at t=6 (the batch's end), not at the next request
    # (trial 1's own end at t=22.5): the trial, waiting on its report, is pruned there
    assert decided_at[1, 1.0] == pytest.approx(6.0)
    assert records[1].status == "pruned" and records[1].last_step == 1.0
    assert records[1].ended == pytest.approx(6.0)


def test_the_model_thread_makes_a_decision_posted_during_its_batch_right_after_it():
    """The same on the real model thread: nothing is requested after the batch."""
    entered, go, decided = threading.Event(), threading.Event(), threading.Event()

    def suggest_batch(k):
        entered.set()
        assert go.wait(30)
        return [Planned(0, {})]

    model = Suggester(suggest_batch).start()
    try:
        model.request(1)
        assert entered.wait(30)  # the batch runs on the model thread, holding the model
        model.post(decided.set)  # queued behind the batch
        assert not decided.is_set()
        go.set()
        assert decided.wait(30), "the posted call waited for a request that never came"
    finally:
        go.set()
        model.close()


def tpe_on_a_slow_model(name, **options):
    """An experiment with TPE whose every batch takes 5 virtual seconds, trials 1 s."""
    exp = daskhpo.build_experiment(name, {"x": "uniform(-1, 1)"}, algorithm="tpe", seed=3)
    executor = FakeModelExecutor(lambda x: x**2, duration=lambda p: 1.0 + p["x"] / 4, slots=8, model_seconds=5.0)
    exp.run(executor, max_trials=60, **options)
    return exp, executor


def test_the_experiment_runs_the_suggester_path_deterministically_in_virtual_time():
    """Batches, tells posted while a batch runs, fills: the same run twice, to the virtual second."""
    first, executor = tpe_on_a_slow_model("a")
    again, _ = tpe_on_a_slow_model("b")
    runs = [[(r.trial, r.params, r.started, r.ended) for r in exp.records()] for exp in (first, again)]
    assert runs[0] == runs[1] and len(runs[0]) == 60
    assert len(executor.batches) > 1 and max(k for _, _, k in executor.batches) > 1  # ask_batch, not one by one
    # the model is slow next to the trials: idle slots were filled, up to fill_idle's share
    ends = {end for _, end, _ in executor.batches}
    filled = [r for r in first.records() if r.started not in ends]  # started while the model worked
    assert 0 < len(filled) <= 0.25 * 60 + 1


def test_without_fills_slots_wait_for_the_model_in_virtual_time():
    exp, executor = tpe_on_a_slow_model("c", fill_idle=0.0)
    ends = {end for _, end, _ in executor.batches}
    assert all(r.started in ends for r in exp.records())  # every trial started when a batch ended
