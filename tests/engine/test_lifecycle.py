"""Workers that come and go on schedule: preemption that resumes from the checkpoint,
walltime-aware admission, soft lifetimes, never a silent starvation (daskhpo.engine.state
and daskhpo.engine.lifetimes, event by event; then end to end on the fake cluster)."""

from __future__ import annotations

import logging
import math
import pickle

import pytest

import daskhpo
from daskhpo.engine.drain import DrainRequest
from daskhpo.engine.executor import Completed, Failed, Reported, Started, WorkersChanged
from daskhpo.engine.fake_lifetimes import FakeLifetimeExecutor
from daskhpo.engine.loop import Engine
from daskhpo.engine.state import (
    Cancel,
    Decided,
    DrainRequested,
    Finish,
    LoopState,
    Planned,
    Prune,
    Record,
    Report,
    Retire,
    SetAlarm,
    Start,
    Submit,
    Suggested,
)
from daskhpo.engine.worker import TrialOutcome, TrialTask, run_trial
from daskhpo.records import PREEMPTED, TrialRecord
from daskhpo.reporting import current_trial, preempt_trials
from tests.engine.state_driver import WALL, answer, feed


def outcome(key, trial, status, *, reports=(), checkpoint=None, started=0.0, ended=100.0, worker="w0"):
    record = TrialRecord(trial, {"x": trial}, status, objective=1.0 if status == "completed" else math.nan,
                         worker=worker, started=WALL + started, ended=WALL + ended,
                         last_step=reports[-1][0] if reports else math.nan)
    return Completed(key, TrialOutcome(record, [(s, {"objective": float(s)}) for s, _ in reports], checkpoint))


def steps(*ss):
    return [(s, None) for s in ss]


def submits(out):
    return [i for i in out if isinstance(i, Submit)]


# -- the worker side ------------------------------------------------------------------------
def test_preempt_trials_stops_a_reporting_trial_at_its_next_report_with_that_checkpoint():
    def objective(x):
        daskhpo.report(1, 1.0, checkpoint={"step": 1})
        assert preempt_trials() == 1  # what the worker's signal handler does, between two steps
        daskhpo.report(2, 0.5, checkpoint={"step": 2})
        raise AssertionError("report(2) should have raised TrialPreempted")

    result = run_trial(objective, TrialTask(7, {"x": 1.0}, "k"), {})
    assert result.record.status == PREEMPTED and result.record.last_step == 2
    assert [s for s, _ in result.reports] == [1, 2]
    assert pickle.loads(result.checkpoint[1]) == {"step": 2}
    assert issubclass(daskhpo.TrialPreempted, Exception) and daskhpo.preempt_trials is preempt_trials


def test_a_trial_that_never_reports_is_not_stopped_by_preempt_trials():
    def objective(x):
        assert preempt_trials() == 1
        return x

    assert run_trial(objective, TrialTask(1, {"x": 2.0}, "k"), {}).record.status == "completed"
    assert preempt_trials() == 0  # no trial left behind


# -- the state machine: preemption ------------------------------------------------------------
def test_a_preempted_attempt_resumes_the_same_trial_from_its_checkpoint_and_reports_once():
    state = LoopState(n_workers=1, retries=0, reports=True, run="r")
    (first,) = start(state, [0])
    assert [type(i) for i in feed(state, Reported(first.key, 0, 1.0, {"objective": 1.0}))] == [Report]
    out = feed(state, outcome(first.key, 0, PREEMPTED, reports=steps(1.0, 2.0), checkpoint=("pickle", b"cp2"),
                              ended=50.0), now=50.0)
    # step 2 reached on_report once (its live message was lost); step 1 not again; nothing recorded
    assert [i.report.step for i in out if isinstance(i, Report)] == [2.0]
    assert not [i for i in out if isinstance(i, Record)]
    (again,) = submits(out)
    assert again.plan.trial == 0 and again.plan.params == {"x": 0} and again.attempt == 2
    assert again.plan.checkpoint == ("pickle", b"cp2") and again.key != first.key
    out = feed(state, outcome(again.key, 0, "completed", reports=steps(2.0, 3.0), started=60.0, ended=90.0), now=90.0)
    assert [i.report.step for i in out if isinstance(i, Report)] == [3.0]
    (record,) = [i.trial for i in out if isinstance(i, Record)]
    assert record.status == "completed" and record.attempts == 2  # retries=0 did not make it lost
    assert record.preempted == ((WALL + 50.0, 2.0),)
    assert state.broken == 0 and state.finished == 1


def test_preemptions_do_not_use_up_retries_and_are_bounded():
    state = LoopState(n_workers=1, retries=1, max_preemptions=3, run="r")
    (sub,) = start(state, [0])
    for i in range(3):
        (sub,) = submits(feed(state, outcome(sub.key, 0, PREEMPTED, reports=steps(i + 1.0), ended=10.0 * i)))
    # a lost worker is still retried once: preemptions did not count
    (sub,) = submits(feed(state, Failed(sub.key, "KilledWorker")))
    out = feed(state, outcome(sub.key, 0, PREEMPTED, reports=steps(9.0)))
    (record,) = [i.trial for i in out if isinstance(i, Record)]
    assert record.status == "lost" and "preempted 4 times" in record.error and "max_preemptions=3" in record.error
    assert len(record.preempted) == 4 and record.attempts == 5 and state.broken == 1


def test_a_pruned_trial_that_is_preempted_is_recorded_pruned_not_resumed():
    state = LoopState(n_workers=1, retries=0, reports=True, run="r")
    (first,) = start(state, [0])
    feed(state, Reported(first.key, 0, 1.0, {"objective": 1.0}, "w0"))
    assert Prune(first.key, "w0") in feed(state, Decided(0, "prune", first.key))
    # its worker left before the prune reached it: it stopped at step 2, preempted
    out = drive(state, outcome(first.key, 0, PREEMPTED, reports=steps(1.0, 2.0), checkpoint=("pickle", b"cp2")),
                [1], now=50.0)
    (record,) = [i for i in out if isinstance(i, Record)]
    assert record.trial.trial == 0 and record.trial.status == "pruned" and record.trial.last_step == 2.0
    assert record.trial.objective == 2.0 and record.checkpoint == ("pickle", b"cp2")
    assert [s.plan.trial for s in submits(out)] == [1]  # trial 0 is not run again
    assert state.finished == 1 and state.broken == 0


def test_a_late_prune_of_a_resubmitted_trial_is_sent_once_its_worker_is_known():
    state = LoopState(n_workers=1, retries=0, reports=True, run="r")
    (first,) = start(state, [0])
    feed(state, Reported(first.key, 0, 1.0, {"objective": 1.0}, "w0"))
    feed(state, Decided(0, None, first.key))  # decided later (decide_later)
    (again,) = submits(feed(state, outcome(first.key, 0, PREEMPTED, reports=steps(1.0), checkpoint=("pickle", b"c"))))
    # the late decision lands while the new attempt's worker is unknown: nothing to send yet
    assert not [i for i in feed(state, Decided(0, "prune")) if isinstance(i, Prune)]
    assert Prune(again.key, "w1") in feed(state, Started(again.key, "w1"))
    assert not [i for i in feed(state, Reported(again.key, 0, 2.0, {"objective": 1.0}, "w1")) if isinstance(i, Prune)]


def test_a_trial_preempted_during_a_drain_is_abandoned_not_dropped():
    state = LoopState(n_workers=2, run="r")
    first, second = start(state, [0, 1])
    request = DrainRequest("test", math.inf, WALL)
    feed(state, DrainRequested(request))
    out = feed(state, outcome(first.key, 0, PREEMPTED, reports=steps(1.0), checkpoint=("pickle", b"c")), now=5.0)
    assert not submits(out) and not [i for i in out if isinstance(i, Record)]
    out = feed(state, outcome(second.key, 1, "completed"), now=10.0)
    assert Finish(request, [0]) in out  # the resumed search runs trial 0 again


def start_from_parent(state):
    """Start ``state`` with trial 0, which starts from trial 5's checkpoint; its submit."""
    feed(state, Start())
    plan = Planned(0, {"x": 0}, parent=5, checkpoint_from=5, checkpoint=("pickle", b"parent"))
    (sub,) = submits(feed(state, Suggested((plan,), nothing=True)))
    return sub


@pytest.mark.parametrize("saved", [None, ("pickle", b"own")])
def test_a_resumed_trial_that_saved_nothing_since_keeps_its_own_checkpoint_never_its_parents(saved):
    state = LoopState(n_workers=1, run="r")
    sub = start_from_parent(state)
    (again,) = submits(feed(state, outcome(sub.key, 0, PREEMPTED, reports=steps(1.0), checkpoint=saved)))
    assert again.plan.checkpoint == (saved or ("pickle", b"parent"))  # where it resumes from
    out = feed(state, outcome(again.key, 0, "completed", reports=steps(2.0)), now=200.0)
    (record,) = [i for i in out if isinstance(i, Record)]
    assert record.checkpoint == saved and record.trial.checkpoint_from == 5


def test_a_trial_preempted_too_often_is_lost_with_its_last_checkpoint():
    state = LoopState(n_workers=1, max_preemptions=1, run="r")
    sub = start_from_parent(state)
    (sub,) = submits(feed(state, outcome(sub.key, 0, PREEMPTED, reports=steps(1.0), checkpoint=("pickle", b"c1"))))
    out = feed(state, outcome(sub.key, 0, PREEMPTED, reports=steps(2.0)), now=200.0)  # saved nothing new
    (record,) = [i for i in out if isinstance(i, Record)]
    assert record.trial.status == "lost" and record.checkpoint == ("pickle", b"c1")


def test_the_run_time_of_running_trials_counts_from_their_start_not_their_submission():
    state = LoopState(n_workers=2, run="r")
    feed(state, WorkersChanged({"a": WALL + 100_000.0}))
    first, second = start(state, [0, 1])
    feed(state, Started(first.key, "a"))
    (third,) = submits(drive(state, outcome(first.key, 0, "completed", ended=200.0, worker="a"), [2], now=200.0))
    feed(state, Started(second.key, "a"), now=1200.0)  # it waited 1200 s in a queue, then started
    feed(state, Started(third.key, "a"), now=1250.0)
    drive(state, outcome(third.key, 2, "completed", started=1250.0, ended=1300.0, worker="a"), [3], now=1300.0)
    # run times 200 s and 50 s, and trial 1 running for 100 s (not 1300 s): 200 * 1.25 + 5
    assert state.life.expected == pytest.approx(255.0)


# -- the state machine: admission, soft lifetime, starvation -----------------------------------
def start(state, trials):
    """Start ``state`` (plain suggestions), answering its requests with ``trials``; the submits."""
    return submits(drive(state, Start(), trials))


def drive(state, event, plans=(), now=0.0):
    """Feed ``event``, answering requests for suggestions with ``plans`` (trial ids); every instruction."""
    return answer(state, feed(state, event, now), iter(Planned(t, {"x": t}) for t in plans), now)


def learn(state, duration=200.0):
    """Run trial 0 for ``duration`` s to its end (the expected run time is then known); trial 1 follows."""
    (sub,) = start(state, [0])
    return drive(state, outcome(sub.key, 0, "completed", started=0.0, ended=duration), [1], now=duration)


def two_running(b_ends):
    """Trials 0 and 1 running on workers "a" (long-lived) and "b" (ends at ``b_ends``)."""
    state = LoopState(n_workers=2, run="r")
    feed(state, WorkersChanged({"a": WALL + 10_000.0, "b": WALL + b_ends}))
    first, second = start(state, [0, 1])
    feed(state, Started(first.key, "a"))
    feed(state, Started(second.key, "b"))
    return state, first, second


def test_no_restriction_before_ends_are_known_and_little_before_run_times_are():
    state = LoopState(n_workers=2, run="r")
    assert all(s.workers is None for s in start(state, [0, 1]))  # no WorkersChanged: as before
    state = LoopState(n_workers=2, run="r")
    feed(state, WorkersChanged({"a": WALL + 5000.0, "b": WALL + 50.0, "c": None}))
    # no trial finished yet, its run time unknown: only a worker about to end (< 60 s) is avoided
    assert all(s.workers == ("a", "c") for s in start(state, [0, 1]))


def test_admission_keeps_a_trial_off_a_worker_about_to_end_and_retires_it_once_idle():
    state = LoopState(n_workers=1, run="r")
    feed(state, WorkersChanged({"long": WALL + 10_000.0, "short": WALL + 400.0, "unknown": None}))
    out = learn(state)  # expected: 200 * 1.25 + 5 = 255 s; "short" has 200 s left at t=200
    assert state.life.expected == pytest.approx(255.0)
    (sub,) = submits(out)
    assert sub.plan.trial == 1 and set(sub.workers) == {"long", "unknown"}
    assert [i.worker for i in out if isinstance(i, Retire)] == ["short"]  # nothing of ours runs there


def test_a_worker_running_our_trial_is_retired_only_when_it_is_done():
    state, first, second = two_running(b_ends=600.0)
    out = drive(state, outcome(first.key, 0, "completed", started=0.0, ended=400.0, worker="a"), [2], now=400.0)
    # "b" has 200 s left < 505 s expected, but trial 1 still runs there: not retired yet
    assert not [i for i in out if isinstance(i, Retire)]
    assert [s.workers for s in submits(out)] == [("a",)]
    out = feed(state, outcome(second.key, 1, "completed", started=0.0, ended=410.0, worker="b"), now=410.0)
    assert [i.worker for i in out if isinstance(i, Retire)] == ["b"]


def test_no_worker_fits_so_the_trial_waits_for_a_fresh_one_then_runs_there():
    state = LoopState(n_workers=1, run="r")
    feed(state, WorkersChanged({"a": WALL + 300.0}))
    out = learn(state)  # "a" has 100 s left < 255 s: no worker fits, every end known: trial 1 waits
    assert not submits(out) and [j.plan.trial for j in state.parked] == [1] and SetAlarm(600.0) in out
    assert [i.worker for i in out if isinstance(i, Retire)] == ["a"]  # idle and ending: it leaves now
    assert state.active and state.free_slots() == 0  # the waiting trial holds its slot
    out = feed(state, WorkersChanged({"fresh": WALL + 250.0 + 3600.0}), now=250.0)
    (sub,) = submits(out)
    assert sub.workers == ("fresh",) and sub.plan.trial == 1 and not state.parked


def test_waiting_is_bounded_and_then_says_so(caplog):
    state = LoopState(n_workers=1, run="r")
    feed(state, WorkersChanged({"a": WALL + 300.0}))
    learn(state)
    assert state.parked
    with caplog.at_level(logging.WARNING, logger="daskhpo.engine.lifetimes"):
        out = feed(state, WorkersChanged({"a": WALL + 300.0, "b": WALL + 900.0}), now=850.0)  # 650 s waited
    (sub,) = submits(out)
    assert sub.workers is None  # submitted anyway, anywhere
    assert "expected to run 255 s" in caplog.text and "longest remaining life" in caplog.text
    assert "is 50 s" in caplog.text


def test_a_trial_longer_than_any_whole_walltime_is_submitted_at_once_with_a_clear_warning(caplog):
    state = LoopState(n_workers=1, run="r")
    feed(state, WorkersChanged({"a": WALL + 3000.0}))  # a whole life of 3000 s
    with caplog.at_level(logging.WARNING, logger="daskhpo.engine.lifetimes"):
        out = learn(state, duration=2900.0)  # expected 3630 s > 3000 s: no fresh worker would fit either
    (sub,) = submits(out)
    assert sub.workers is None and not state.parked
    assert "longer than any worker's whole life" in caplog.text and "checkpoint" in caplog.text


def test_a_cluster_joined_mid_job_counts_its_workers_whole_life_from_their_start():
    # the run starts 2500 s into jobs of 3000 s: 500 s left, a whole life of 3000 s
    state = LoopState(n_workers=1, run="r")
    feed(state, WorkersChanged({"a": WALL + 500.0}, {"a": WALL - 2500.0}))
    assert state.life.whole_life(WALL) == pytest.approx(3000.0)
    out = learn(state, duration=400.0)  # expected 505 s: "a" (100 s left) does not fit, a fresh job would
    assert not submits(out) and [j.plan.trial for j in state.parked] == [1]


def test_a_queued_trial_goes_where_workers_are_when_its_own_leave():
    state, first, second = two_running(b_ends=600.0)
    out = drive(state, outcome(first.key, 0, "completed", ended=400.0, worker="a"), [2], now=400.0)
    (sub,) = submits(out)
    assert sub.workers == ("a",)  # "b" has 200 s left, less than the 505 s expected
    out = feed(state, WorkersChanged({"b": WALL + 600.0, "c": WALL + 10_000.0}), now=401.0)  # "a" left
    assert Cancel(sub.key) in out
    (again,) = submits(out)
    assert again.plan.trial == 2 and again.workers == ("c",)


def test_a_re_targeted_trial_keeps_the_worker_it_should_avoid_and_no_re_target_during_a_drain():
    state, first, second = two_running(b_ends=600.0)
    out = drive(state, outcome(first.key, 0, "completed", ended=400.0, worker="a"), [2], now=400.0)
    (sub,) = submits(out)
    state.jobs[sub.key].quarantined_from = "bad"  # it runs again because it broke on worker "bad"
    (again,) = submits(feed(state, WorkersChanged({"b": WALL + 600.0, "c": WALL + 10_000.0}), now=401.0))
    assert again.avoid == "bad" and again.attempt == sub.attempt and again.workers == ("c",)
    request = DrainRequest("test", math.inf, WALL)
    feed(state, DrainRequested(request), now=402.0)
    out = feed(state, WorkersChanged({"b": WALL + 600.0, "d": WALL + 10_000.0}), now=403.0)  # "c" left
    assert Cancel(again.key) in out and not submits(out)  # draining: abandoned, not submitted again
    out = feed(state, outcome(second.key, 1, "completed", worker="b"), now=404.0)
    assert Finish(request, [2]) in out


def test_trials_submitted_at_once_may_start_on_any_worker_they_fit_not_one_idle_one():
    state = LoopState(n_workers=3, run="r")
    feed(state, WorkersChanged({"a": WALL + 10_000.0, "b": WALL + 10_000.0}))
    (first,) = start(state, [0])
    feed(state, Started(first.key, "a"))
    out = feed(state, Suggested((Planned(1, {"x": 1}), Planned(2, {"x": 2}))))
    # not both pinned to "b" (the idle one), where the second would queue behind the first
    assert [set(s.workers) for s in submits(out)] == [{"a", "b"}, {"a", "b"}]


# -- end to end on the fake cluster ----------------------------------------------------------
STEPS = 10


def counting_objective(x, done):
    """Ten steps from its checkpoint; ``done`` collects (trial, step) of each step it runs."""
    first = (daskhpo.load_checkpoint() or 0) + 1
    for step in range(first, STEPS + 1):
        done.append((current_trial(), step))
        daskhpo.report(step, x + 1.0 / step, checkpoint=step)
    return x


def run_fake(aware, retries=0, **kwargs):
    done, records, reports = [], [], []
    executor = FakeLifetimeExecutor(counting_objective, fn_kwargs={"done": done}, duration=100.0, aware=aware,
                                    **kwargs)
    plans = iter([Planned(0, {"x": 0.0})])
    engine = Engine(executor, retries=retries)

    def on_report(report, params):
        reports.append((report.trial, report.step))
        return "continue"

    engine.run(lambda: next(plans, None), lambda r, c: records.append(r), on_report=on_report)
    return executor, records, reports, done


def test_a_preempted_trial_resumes_on_another_worker_from_its_checkpoint():
    # worker 0 is preempted 45 s after it starts (signal at 35 s); a replacement joins 5 s later
    executor, (record,), reports, done = run_fake(
        True, workers=1, lifetime=10_000.0, preempt=lambda w: 45.0 if w == "fake-worker-0" else None,
        grace=10.0, replace=5.0)
    assert executor.preempted == 1 and executor.killed == 0
    assert record.trial == 0 and record.status == "completed" and record.attempts == 2
    assert record.worker == "fake-worker-1" and len(record.preempted) == 1
    stopped_at = record.preempted[0][1]
    assert stopped_at == 4  # reports every 100/11 s: the first after the signal at 35 s is step 4 (36.4 s)
    # the second attempt ran only the steps after the checkpoint; every step reported once
    assert [s for _, s in done] == list(range(1, STEPS + 1)) + list(range(5, STEPS + 1))
    assert sorted(reports) == [(0, float(s)) for s in range(1, STEPS + 1)]


def test_without_lifetimes_the_killed_trial_starts_again_from_zero():
    executor, (record,), _, done = run_fake(
        False, retries=1, workers=1, lifetime=10_000.0, preempt=lambda w: 45.0 if w == "fake-worker-0" else None,
        grace=10.0, replace=5.0)
    assert executor.killed == 1 and executor.preempted == 0
    assert record.status == "completed" and record.attempts == 2 and record.preempted == ()
    assert [s for _, s in done] == list(range(1, STEPS + 1)) * 2  # everything redone


def test_admission_and_soft_lifetime_on_the_fake_cluster():
    # two workers: "0" lives long, "1" ends at 150 s; trials take 100 s (expected 130 s once known)
    done, records = [], []
    executor = FakeLifetimeExecutor(counting_objective, fn_kwargs={"done": done}, duration=100.0, workers=2,
                                    lifetime=lambda w: 150.0 if w == "fake-worker-1" else 10_000.0, replace=1.0,
                                    grace=5.0)
    plans = iter(Planned(i, {"x": float(i)}) for i in range(6))
    Engine(executor, retries=0).run(lambda: next(plans, None), lambda r, c: records.append(r))
    assert executor.killed == 0 and executor.preempted == 0  # no trial was started where it could not finish
    assert executor.retired[:1] == ["fake-worker-1"]  # left at 100 s, idle, rather than at its end
    assert all(r.status == "completed" and r.attempts == 1 for r in records) and len(records) == 6
    assert not [r for r in records if r.worker == "fake-worker-1" and r.started >= 100.0]


# -- the Dask executor's side of the contract --------------------------------------------------
def test_the_dask_executor_runs_only_where_told_says_where_it_started_and_retires_a_worker():
    import time

    from distributed import Client, LocalCluster

    from daskhpo.engine.dask_executor import DaskExecutor

    with LocalCluster(n_workers=2, threads_per_worker=2, processes=False, dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)
        w0, w1 = sorted(client.scheduler_info()["workers"])
        executor = DaskExecutor(client, lambda x: x)
        executor.open()
        try:
            for i in range(4):
                executor.submit(TrialTask(i, {"x": float(i)}, f"lifecycle-{i}"), workers=(w1,))
            started, done = {}, {}
            while len(done) < 4 or len(started) < 4:
                event = executor.next_event()
                if isinstance(event, Started):
                    started[event.key] = event.worker
                elif isinstance(event, Completed):
                    done[event.key] = event.outcome.record.worker
            assert set(started.values()) == {w1} and set(done.values()) == {w1}
            executor.retire(w0)
            deadline = time.monotonic() + 60
            while w0 in client.scheduler_info()["workers"] and time.monotonic() < deadline:
                time.sleep(0.05)
            assert list(client.scheduler_info()["workers"]) == [w1]
        finally:
            executor.close()


def test_the_dask_executor_sends_each_workers_end_and_process_start():
    import time

    from distributed import Client, LocalCluster

    from daskhpo.engine.dask_executor import DaskExecutor

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, lifetime="2h",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(1, timeout=60)
        executor = DaskExecutor(client, lambda x: x)
        executor.open()
        try:
            event = executor.next_event()
            while not isinstance(event, WorkersChanged):
                event = executor.next_event()
        finally:
            executor.close()
    ((worker, end),) = event.ends.items()
    assert end > time.time()  # Dask's lifetime (counted from the process start)
    assert event.starts[worker] <= time.time() and end - event.starts[worker] <= 2 * 3600 + 60


def test_a_cancelled_attempt_refuses_to_start_afterwards():
    import time

    from distributed import Client, LocalCluster

    from daskhpo.engine.dask_executor import DaskExecutor
    from daskhpo.engine.worker import CLAIMS, AttemptLost, claim_attempt

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(1, timeout=60)
        executor = DaskExecutor(client, lambda x: x)
        executor.open()
        try:
            # waits for a worker that is not there (as a trial re-targeted away from a busy worker)
            executor.submit(TrialTask(0, {"x": 0.0}, "old-attempt"), workers=("tcp://127.0.0.1:9",))
            executor.cancel("old-attempt")
            deadline = time.monotonic() + 60
            while not client.get_metadata([CLAIMS, executor.topic, "old-attempt"], None) \
                    and time.monotonic() < deadline:
                time.sleep(0.05)
            # its task, had it been claimed only now, refuses to run the objective
            with pytest.raises(AttemptLost, match="cancelled"):
                client.submit(claim_attempt, executor.topic, "old-attempt", pure=False).result(timeout=60)
        finally:
            executor.close()


def test_a_job_shorter_than_min_left_is_used_not_retired_in_a_loop():
    """1-minute jobs against the 60 s min_left: a fresh job of the same walltime would not do
    better, so the worker is not retired (an adaptive cluster would start and retire jobs in a
    loop: users of such short jobs lower ``Lifetimes(min_left=...)``)."""
    state = LoopState(n_workers=1, run="r")
    out = feed(state, WorkersChanged({"w": WALL + 55.0}, starts={"w": WALL - 5.0}))
    assert not [i for i in out if isinstance(i, Retire)]
    start(state, [0])  # the trial waits for a worker with 60 s left (bounded: Lifetimes.wait)
    out = feed(state, WorkersChanged({"w": WALL + 55.0}, starts={"w": WALL - 5.0}), now=1.0)
    assert not [i for i in out if isinstance(i, Retire)]
