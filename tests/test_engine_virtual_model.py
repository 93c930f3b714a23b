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
