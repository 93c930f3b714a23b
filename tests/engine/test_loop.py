"""The engine's loop on the fake executor: virtual time, no Dask, milliseconds per test."""

from __future__ import annotations

import json
import math
import os
import signal
import threading

import pytest

import daskhpo
from daskhpo import TooManyBrokenTrials
from daskhpo.engine import (
    Engine,
    FakeExecutor,
    Planned,
    clear_drain,
    drain_requested,
    install_signal_handlers,
    request_drain,
)
from daskhpo.optimizers import CONTINUE, PRUNE, Optimizer, Suggestion
from daskhpo.records import ReportRecord, TrialRecord
from daskhpo.store.history import read_history

SPACE = {"x": "uniform(-1, 1)"}


def square(x):
    return x**2


def by_x(params):
    """Durations from 1 to 3 virtual seconds: trials finish out of submission order."""
    return 2 + params["x"]


def overlap(records) -> int:
    events = sorted([(r.started, 1) for r in records] + [(r.ended, -1) for r in records], key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def experiment(**kwargs):
    return daskhpo.build_experiment("fake", SPACE, seed=kwargs.pop("seed", 0), **kwargs)


def test_slots_stay_busy_and_are_never_exceeded():
    executor = FakeExecutor(square, duration=by_x, slots=3)
    exp = experiment().run(executor, max_trials=30)
    records = exp.records()
    assert len(records) == 30 and {r.status for r in records} == {"completed"}
    assert overlap(records) == 3  # the default n_workers is the executor's slots
    # no slot idles until the queue drains: the busy time fills 3 slots up to the last start
    last_start = max(r.started for r in records)
    busy = sum(min(r.ended, last_start) - r.started for r in records)
    assert busy == pytest.approx(3 * last_start)
    assert len(executor.submitted) == 30  # the budget bounds submissions too


def test_finish_order_is_the_recorded_order():
    exp = experiment().run(FakeExecutor(square, duration=by_x, slots=4), max_trials=20)
    records = exp.records()
    by_seq = sorted(records, key=lambda r: r.seq)
    assert [r.ended for r in by_seq] == sorted(r.ended for r in records)
    assert [r.trial for r in by_seq] != sorted(r.trial for r in records)  # not merely id order
    ds = exp.history
    assert ds["order"].dtype == "int64" and list(ds["order"].values) == [r.seq for r in records]


def test_lost_worker_is_retried_then_recorded_lost():
    def lose_trial_2(trial, attempt):
        return "lose" if trial == 2 else None

    exp = experiment().run(FakeExecutor(square, faults=lose_trial_2, slots=2), max_trials=5, retries=1, max_broken=5)
    by_id = {r.trial: r for r in exp.records()}
    assert by_id[2].status == "lost" and by_id[2].attempts == 2
    assert "KilledWorker" in by_id[2].error and "after 2 attempts" in by_id[2].error
    assert sum(r.status == "completed" for r in by_id.values()) == 5

    def lose_first_attempt(trial, attempt):
        return "lose" if attempt == 1 and trial % 2 == 0 else None

    exp = experiment().run(FakeExecutor(square, faults=lose_first_attempt), max_trials=6, retries=1)
    records = exp.records()
    assert {r.status for r in records} == {"completed"}
    assert [r.attempts for r in records] == [2 if r.trial % 2 == 0 else 1 for r in records]


def test_cluster_reruns_count_as_attempts_and_are_bounded():
    def rerun_trial_1(trial, attempt):
        return "rerun" if trial == 1 else None

    exp = experiment().run(FakeExecutor(square, faults=rerun_trial_1), max_trials=4, retries=1)
    assert {r.trial: r.attempts for r in exp.records()}[1] == 2
    exp = experiment().run(FakeExecutor(square, faults=rerun_trial_1), max_trials=4, retries=0, max_broken=5)
    lost = {r.trial: r for r in exp.records()}[1]
    assert lost.status == "lost" and "left mid-trial in each of 1 attempts (retries=0)" in lost.error


def test_trial_timeout_in_virtual_time():
    executor = FakeExecutor(square, duration=by_x, trial_timeout=2.5)
    exp = experiment().run(executor, max_trials=10, max_broken=100)
    for r in exp.records():
        if r.status == "timeout":
            assert 2 + r.params["x"] > 2.5 and r.duration == pytest.approx(2.5)
            assert "trial_timeout=2.5" in r.error and math.isnan(r.objective)
        else:
            assert r.status == "completed" and 2 + r.params["x"] <= 2.5
    assert any(r.status == "timeout" for r in exp.records())


def broken_for_negative(x):
    if x < 0:
        raise RuntimeError("CUDA error: no device")
    return x


def test_max_broken_stops_the_run_with_the_history_kept(tmp_path):
    exp = experiment(storage=tmp_path / "b.nc")
    with pytest.raises(TooManyBrokenTrials, match=r"3 trials broke \(max_broken=2\).*RuntimeError: CUDA error"):
        exp.run(FakeExecutor(broken_for_negative), max_trials=50, max_broken=2, quarantine_after=None)
    stored = daskhpo.load_experiment(tmp_path / "b.nc").records()
    assert sum(r.status == "broken" for r in stored) == 3
    assert all("Traceback" in r.error for r in stored if r.status == "broken")


def test_budget_counts_finished_trials_only():
    exp = experiment().run(FakeExecutor(broken_for_negative, slots=2), max_trials=8, max_broken=100)
    records = exp.records()
    assert sum(r.status == "completed" for r in records) == 8
    assert len(records) == 8 + sum(r.status == "broken" for r in records)


class Interrupt:
    """An objective that is interrupted (Ctrl-C) at its ``at``-th call."""

    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def __call__(self, x):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return x**2


def test_ctrl_c_stops_the_loop_and_saves_what_finished(tmp_path):
    path = tmp_path / "int.nc"
    exp = experiment(storage=path, snapshot_interval=1e9)
    executor = FakeExecutor(Interrupt(12), duration=by_x, slots=4)
    with pytest.raises(KeyboardInterrupt):
        exp.run(executor, max_trials=100)
    assert executor._events == [] and executor._running == {}  # the executor was closed
    finished = len(exp.records())
    assert 0 < finished < 12
    snapshot, _, events = read_history(path)
    assert sum(isinstance(e, TrialRecord) for e in events) == finished  # in the snapshot itself
    resumed = daskhpo.build_experiment("fake", SPACE, storage=path)
    resumed.run(FakeExecutor(square, duration=by_x), max_trials=20)
    assert sorted(r.trial for r in resumed.records())[:finished] == sorted(r.trial for r in exp.records())
    assert sum(r.status == "completed" for r in resumed.records()) == 20


class PruneAbove(Optimizer):
    """Random configurations; prunes a trial reporting ``objective > limit`` at step >= 2."""

    name = "prune-above"

    def __init__(self, space, seed=None, limit=0.75):
        super().__init__(space, seed)
        self.limit, self.heard = limit, []

    def ask(self, trial_id):
        return Suggestion(self.space.sample(self.rng_for(trial_id)))

    def tell(self, trial):
        self.heard.append(("tell", trial.id, trial.status))

    def report(self, report):
        self.heard.append(("report", report.trial_id, report.step))
        return PRUNE if report.step >= 2 and report.objective > self.limit else CONTINUE


def curve(x, steps=5):
    for step in range(1, steps + 1):
        daskhpo.report(step, objective=x**2 + 1 / step, extra=float(step))
    return x**2


def test_reports_reach_the_optimizer_live_and_prune_at_the_next_report(tmp_path):
    opt = PruneAbove(daskhpo.Space(SPACE), seed=1)
    exp = daskhpo.build_experiment("r", SPACE, algorithm=opt, storage=tmp_path / "r.nc")
    exp.run(FakeExecutor(curve, duration=by_x, slots=4), max_trials=16)
    records = exp.records()
    pruned = [r for r in records if r.status == "pruned"]
    completed = [r for r in records if r.status == "completed"]
    assert pruned and completed
    for r in pruned:
        # the decision at step 2 stops the trial at its next report (step 3), whose values it keeps
        assert r.last_step == 3 and r.objective == pytest.approx(r.params["x"] ** 2 + 1 / 3)
        assert r.metrics == {"extra": 3.0}
        assert [rep.step for rep in exp.reports(r.trial)] == [1, 2, 3]
    for r in completed:
        assert r.last_step == 5 and r.params["x"] ** 2 + 1 / 2 <= 0.75
    # every report is heard before its trial's tell, each once
    for r in records:
        mine = [h for h in opt.heard if h[1] == r.trial]
        assert mine[-1][0] == "tell" and [h[2] for h in mine[:-1]] == sorted({h[2] for h in mine[:-1]})
    assert exp.history.reported_objective.dims == ("trial", "step")


def test_engine_rejects_bad_options():
    for kwargs, name in [({"n_workers": 0}, "n_workers"), ({"retries": -1}, "retries"), ({"max_broken": -1}, "max_broken")]:
        with pytest.raises(ValueError, match=name):
            Engine(FakeExecutor(square), **kwargs)
    with pytest.raises(ValueError, match="trial_timeout"):
        FakeExecutor(square, trial_timeout=0)


def test_engine_alone_with_plain_callables():
    """The loop needs no experiment: suggest, record and report are plain callables."""
    plans = iter(Planned(i, {"x": i / 10}) for i in range(6))
    recorded, reports = [], []

    def on_report(report: ReportRecord, params) -> str:
        reports.append((report.trial, report.step))
        return "continue"

    engine = Engine(FakeExecutor(curve, fn_kwargs={"steps": 2}), n_workers=2)
    finished = engine.run(lambda: next(plans, None), lambda rec, ck: recorded.append(rec), on_report=on_report)
    assert finished == 6 and sorted(r.trial for r in recorded) == list(range(6))
    assert sorted(reports) == [(t, s) for t in range(6) for s in (1.0, 2.0)]
    assert all(r.attempts == 1 and r.submitted is not None for r in recorded)


def test_ten_thousand_slots_are_simulated_quickly():
    executor = FakeExecutor(square, duration=lambda p: 60 * (1.5 + p["x"] / 2), slots=10_000)
    exp = experiment().run(executor, max_trials=12_000)
    records = exp.records()
    assert len(records) == 12_000 and overlap(records) == 10_000


# -- drain: a graceful stop (daskhpo.engine.drain) ------------------------------------------------


@pytest.fixture
def no_drain():
    """Every drain test leaves no process-wide request behind."""
    clear_drain()
    yield
    clear_drain()


def by_id(params):
    """Trial i runs i + 1 virtual seconds (the plans below set x = i)."""
    return params["x"] + 1


def drain_after_first(grace: float):
    """An engine on 4 slots whose first result asks it to drain with ``grace``."""
    plans = iter(Planned(i, {"x": float(i)}) for i in range(100))
    executor = FakeExecutor(square, duration=by_id)
    engine = Engine(executor, n_workers=4)
    recorded = []

    def record(rec, checkpoint):
        recorded.append(rec.trial)
        if len(recorded) == 1:
            engine.drain(grace, "test")

    finished = engine.run(lambda: next(plans, None), record)
    return engine, executor, recorded, finished


def test_drain_finishes_trials_in_flight_within_the_grace_and_abandons_the_rest(no_drain):
    # trial 0 ends at t=1 and drains with 2.5 s: trials 1 and 2 (ending at 2 and 3) finish,
    # trial 3 (ending at 4) is cancelled at t=3.5, and nothing else is ever submitted.
    engine, executor, recorded, finished = drain_after_first(2.5)
    assert recorded == [0, 1, 2] and finished == 3
    assert engine.abandoned == [3] and engine.drained.reason == "test" and engine.drained.grace == 2.5
    assert [t.trial for t in executor.submitted] == [0, 1, 2, 3]
    assert executor.now == pytest.approx(3.5)  # the grace bounds the wait, to the virtual second


def test_drain_without_grace_cancels_at_once_and_a_new_run_runs_normally(no_drain):
    engine, executor, recorded, finished = drain_after_first(0)
    assert recorded == [0] and engine.abandoned == [1, 2, 3] and executor.now == pytest.approx(1)
    plans = iter(Planned(i, {"x": 0.0}) for i in range(3))
    assert engine.run(lambda: next(plans, None), lambda rec, ck: None) == 3  # the drain was for one run
    assert engine.drained is None and engine.abandoned == []


def test_a_process_wide_drain_stops_the_run_records_why_and_resume_completes(tmp_path, no_drain):
    path = tmp_path / "drain.nc"
    exp = experiment(storage=path)
    exp.subscribe(lambda rec: len(exp.records()) == 5 and request_drain("walltime", grace=1.5))
    executor = FakeExecutor(square, duration=by_x, slots=4)
    exp.run(executor, max_trials=30)  # returns normally
    first = {r.trial: r for r in exp.records()}
    assert 5 <= len(first) <= 8 and {r.status for r in first.values()} == {"completed"}
    assert len(executor.submitted) == 8  # the 5 recorded and the 3 in flight then: nothing after the drain
    # while the request stands, a run starts nothing (a signal that came between two searches)
    again = FakeExecutor(square)
    exp.run(again, max_trials=30)
    assert again.submitted == [] and len(exp.records()) == len(first)
    clear_drain()
    exp.close()
    resumed = daskhpo.build_experiment("fake", SPACE, storage=path)
    resumed.run(FakeExecutor(square, duration=by_x, slots=4), max_trials=30)
    records = resumed.records()
    assert len(records) == 30 and {r.status for r in records} == {"completed"}
    assert all(records_by_id.params == first[t].params for t, records_by_id in {r.trial: r for r in records}.items()
               if t in first)
    sessions = json.loads(daskhpo.load_experiment(path).attrs["driver_sessions"])
    assert [s["reason"] for s in sessions] == ["drained: walltime", "completed"]
    assert all(s["pid"] == os.getpid() and s["end"] for s in sessions)


def test_a_signal_drains_through_the_installed_handler(tmp_path, no_drain):
    exp = experiment(storage=tmp_path / "sig.nc")
    restore = install_signal_handlers({signal.SIGUSR1: 100.0})
    try:
        exp.subscribe(lambda rec: len(exp.records()) == 3 and os.kill(os.getpid(), signal.SIGUSR1))
        exp.run(FakeExecutor(square, duration=by_x, slots=2), max_trials=50)
    finally:
        restore()
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
    assert drain_requested().reason == "SIGUSR1" and drain_requested().grace == 100.0
    assert 3 <= len(exp.records()) <= 4  # the one in flight finished within the grace
    assert exp.attrs["driver_sessions"].count('"drained: SIGUSR1"') == 1


def test_drain_rejects_a_bad_grace(no_drain):
    for bad in (-1, float("nan"), "10", True):
        with pytest.raises(ValueError, match="grace must be non-negative seconds"):
            request_drain("x", grace=bad)
    assert drain_requested() is None


def test_a_drain_while_every_slot_waits_for_the_model_submits_nothing(no_drain):
    """Nothing runs, the model's first batch is still being computed: a drain meanwhile ends the
    run without submitting the batch's trials."""
    from daskhpo.engine import Suggester
    from daskhpo.engine.simulate import ModelClockExecutor

    batch_started, drained = threading.Event(), threading.Event()

    def slow_batch(k):
        batch_started.set()
        drained.wait(30)  # the model is still busy when the drain arrives
        return [Planned(i, {"x": 0.0}) for i in range(k)]

    def drain_mid_batch():
        batch_started.wait(30)
        engine.drain(0.0, "test")
        drained.set()

    executor = ModelClockExecutor(lambda x: x, duration=1.0, slots=4)
    engine = Engine(executor)
    threading.Thread(target=drain_mid_batch, daemon=True).start()
    assert engine.run(Suggester(slow_batch), lambda rec, ck: None) == 0
    assert engine.drained.reason == "test" and executor.submitted == []
