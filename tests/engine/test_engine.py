"""The Dask loop, on real clusters."""

from __future__ import annotations

import math
import os
import time

import dask
import pytest
from distributed import Client, LocalCluster, Scheduler, SpecCluster, Worker

import daskhpo
from daskhpo import TooManyBrokenTrials

SPACE = {"x": "uniform(-1, 1)"}


def sleepy(x, delay=0.05):
    time.sleep(delay)
    return x**2


def max_overlap(ds) -> int:
    """Most trials running at the same moment, from the workers' own clocks."""
    events = []
    for start, end in zip(ds["started"].values, ds["ended"].values):
        events += [(start, 1), (end, -1)]
    running = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.parametrize("n_workers", [1, 2])
def test_never_more_than_n_workers_trials_in_flight(process_client, n_workers):
    exp = daskhpo.build_experiment("flight", SPACE, seed=0)
    exp.workon(sleepy, max_trials=10, client=process_client, n_workers=n_workers, delay=0.1)
    ds = exp.history
    assert ds.sizes["trial"] == 10 and set(ds["status"].values) == {"completed"}
    assert max_overlap(ds) == n_workers  # never more, and the slots were kept busy
    if n_workers == 2:
        assert len(set(ds["worker"].values)) == 2


def test_default_n_workers_is_the_clusters_threads(client):
    exp = daskhpo.build_experiment("default", SPACE, seed=0)
    exp.workon(sleepy, max_trials=8, client=client, delay=0.1)
    assert max_overlap(exp.history) == 2


def fragile(x):
    if x < -0.5:
        raise ValueError(f"x={x} is too small")
    if x < 0:
        return math.nan
    if x < 0.3:
        return {"accuracy": 1.0}  # no objective key
    return x


def test_broken_trials_are_recorded_and_the_search_goes_on(client):
    exp = daskhpo.build_experiment("fragile", SPACE, seed=1)
    exp.workon(fragile, max_trials=5, client=client, max_broken=100)
    ds = exp.history
    completed = ds.where(ds["status"] == "completed", drop=True)
    broken = ds.where(ds["status"] == "broken", drop=True)
    assert completed.sizes["trial"] == 5 and broken.sizes["trial"] > 0
    assert all(completed["x"].values >= 0.3)
    for x, error in zip(broken["x"].values, broken["error"].values):
        if x < -0.5:
            assert "ValueError: x=" in error and "Traceback" in error
        elif x < 0:
            assert error == "objective is nan"
        else:
            assert "needs the key 'objective'" in error
    assert all(math.isnan(v) for v in broken["objective"].values)


def always_fails(x):
    raise RuntimeError("CUDA error: no device")


def test_too_many_broken_trials_stop_with_history_saved(client, tmp_path):
    path = tmp_path / "broken.nc"
    exp = daskhpo.build_experiment("broken", SPACE, storage=path, seed=0)
    # Held for the quarantine's judgement, broken trials are counted a few at a time.
    with pytest.raises(TooManyBrokenTrials, match="[3-9] trials broke \\(max_broken=2\\).*RuntimeError: CUDA error: no device$"):
        exp.workon(always_fails, max_trials=10, client=client, max_broken=2)
    stored = daskhpo.load_experiment(path).history
    assert (stored["status"] == "broken").sum() >= 3


def slow_for_positive(x):
    if x > 0:
        for _ in range(200):  # 2 s of Python-level work, interruptible between steps
            time.sleep(0.01)
    return x


def test_trials_past_their_timeout_are_recorded(client):
    exp = daskhpo.build_experiment("timeout", SPACE, seed=0)
    exp.workon(slow_for_positive, max_trials=4, client=client, trial_timeout=0.5, max_broken=100)
    ds = exp.history
    timed_out = ds.where(ds["status"] == "timeout", drop=True)
    # Only slow trials time out: a fast trial queued behind a slow one is not charged
    # for its wait, because the clock starts on the worker.
    assert timed_out.sizes["trial"] > 0 and all(timed_out["x"].values > 0)
    assert all("trial_timeout=0.5" in e for e in timed_out["error"].values)
    # The objective was interrupted, not left running for its full 2 s.
    assert all(timed_out["duration"].values < 1.5)
    assert all(ds.where(ds["status"] == "completed", drop=True)["x"].values <= 0)


def dies_once(x, marker_dir):
    marker = os.path.join(marker_dir, "died")
    if x > 0 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)  # the worker process dies mid-trial
    return x


@pytest.fixture
def fragile_cluster_client():
    # With allowed-failures=0 the scheduler gives up on a task at its first worker death,
    # so that the engine's own retry is what brings the trial back.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster:
            with Client(cluster, set_as_default=False) as client:
                yield client


@pytest.mark.parametrize("retries, expected", [(1, "completed"), (0, "lost")])
def test_trial_whose_worker_died_is_retried(fragile_cluster_client, tmp_path, retries, expected):
    exp = daskhpo.build_experiment("died", {"x": "uniform(0.1, 1)"}, seed=0)
    exp.workon(dies_once, max_trials=3, client=fragile_cluster_client, retries=retries,
               marker_dir=str(tmp_path), max_broken=5)
    ds = exp.history
    hit = (ds["attempts"] > 1) | (ds["status"] != "completed")
    assert int(hit.sum()) == 1  # the death cost exactly one trial
    victim = ds.where(hit, drop=True).isel(trial=0)
    assert str(victim["status"].values) == expected
    assert int(victim["attempts"]) == (2 if retries else 1)
    if expected == "lost":
        assert "KilledWorker" in str(victim["error"].values)
    assert int((ds["status"] == "completed").sum()) == 3


def where_am_i(x):
    from distributed import get_worker

    return {"objective": x, "gpu_worker": float(get_worker().state.total_resources.get("GPU", 0))}


def test_resource_annotated_trials_only_run_on_workers_with_the_resource():
    workers = {
        "gpu": {"cls": Worker, "options": {"nthreads": 1, "resources": {"GPU": 1}}},
        "cpu": {"cls": Worker, "options": {"nthreads": 2}},
    }
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": ":0"}}
    with SpecCluster(workers=workers, scheduler=scheduler) as cluster, Client(cluster, set_as_default=False) as client:
        gpu_address = [a for a, w in client.scheduler_info()["workers"].items() if w["resources"]][0]
        exp = daskhpo.build_experiment("gpu", SPACE, seed=0)
        exp.workon(where_am_i, max_trials=6, client=client, resources={"GPU": 1}, n_workers=3)
        ds = exp.history
        assert set(ds["worker"].values) == {gpu_address}
        assert set(ds["gpu_worker"].values) == {1.0}
        assert max_overlap(ds) == 1  # one GPU: one trial at a time, although 3 were queued
        plain = daskhpo.build_experiment("cpu", SPACE, seed=0)
        plain.workon(sleepy, max_trials=9, client=client, delay=0.1)
        assert len(set(plain.history["worker"].values)) == 2


def test_default_slots_count_only_workers_with_the_resource():
    from daskhpo.engine import DaskExecutor

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0",
                      resources={"GPU": 1}) as cluster, Client(cluster, set_as_default=False) as client:
        assert DaskExecutor(client, sleepy).slots() == 2
        assert DaskExecutor(client, sleepy, resources={"GPU": 1}).slots() == 1
        with pytest.raises(daskhpo.NoWorkersError, match="resources"):
            DaskExecutor(client, sleepy, resources={"TPU": 1}).slots()


def test_large_clusters_queue_one_trial_in_ten_on_the_workers():
    """20 threads: 22 trials in flight, of which 2 wait on the worker for a free thread."""
    from daskhpo.engine import DaskExecutor

    with LocalCluster(n_workers=1, threads_per_worker=20, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        assert DaskExecutor(client, sleepy).slots() == 22
        exp = daskhpo.build_experiment("ahead", SPACE, seed=0)
        exp.workon(sleepy, max_trials=44, client=client, delay=0.2)
        records = exp.records()
        assert len(records) == 44 and {r.status for r in records} == {"completed"}
        assert max_overlap(exp.history) <= 20  # never more than the threads ran, though 22 were in flight
        # the queued ones started as soon as a thread freed: first submitted 22, some waited
        assert max(r.started - r.submitted for r in records) > 0.1


def test_no_worker_ever_arriving_fails_clearly():
    with LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as cluster, Client(
        cluster, set_as_default=False
    ) as client:
        exp = daskhpo.build_experiment("empty", SPACE, seed=0)
        with pytest.raises(daskhpo.NoWorkersError, match="within 1 s"):
            exp.workon(sleepy, max_trials=2, client=client, worker_timeout=1)
        with pytest.raises(daskhpo.NoWorkersError, match="within 1 s"):
            exp.workon(sleepy, max_trials=2, client=client, n_workers=2, worker_timeout=1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_workers": 0}, "n_workers"),
        ({"retries": -1}, "retries"),
        ({"trial_timeout": 0}, "trial_timeout"),
        ({"max_broken": -2}, "max_broken"),
    ],
)
def test_invalid_engine_options(client, kwargs, message):
    exp = daskhpo.build_experiment("bad", SPACE, seed=0)
    with pytest.raises(ValueError, match=message):
        exp.workon(sleepy, max_trials=1, client=client, **kwargs)


def test_a_trial_without_deadline_never_injects_exceptions(monkeypatch):
    """Regression: clearing a pending async exception after every trial (a ctypes call that
    holds the GIL while it waits for CPython's thread-list lock) deadlocked a worker whose
    profiler held that lock while waiting for the GIL.  Only a deadline that fired clears."""
    import ctypes

    from daskhpo.engine.worker import TrialTimeout, _Deadline

    calls = []
    real = ctypes.pythonapi.PyThreadState_SetAsyncExc
    monkeypatch.setattr(ctypes.pythonapi, "PyThreadState_SetAsyncExc", lambda *a: calls.append(a) or real(*a))
    with _Deadline(None):
        pass
    with _Deadline(5.0):  # armed, never fired
        pass
    assert calls == []
    with pytest.raises(TrialTimeout):
        with _Deadline(0.01):
            time.sleep(0.2)
            for _ in range(10**6):  # the exception arrives at a Python instruction
                pass
    assert len(calls) == 2  # injected, then cleared


def test_a_finished_attempt_cancelled_afterwards_is_still_forwarded_as_completed(client):
    """A drain (Ctrl-C, a timeout) cancels attempts while the completions thread forwards
    them: a future that finished and reads "cancelled" by then carries its outcome, which
    must arrive as Completed (it once crashed the thread: 'TrialOutcome' object is not
    subscriptable)."""
    from daskhpo.engine import DaskExecutor
    from daskhpo.engine.executor import Completed

    executor = DaskExecutor(client, sleepy)
    executor.open()
    try:
        future = client.submit(lambda: "the outcome", pure=False)
        result = future.result()
        future.cancel()  # the drain's cancel, after the result came
        assert future.status == "cancelled"
        executor._forward(future, result)
        event = executor._inbox.get_nowait()
        assert isinstance(event, Completed) and event.outcome == "the outcome"
    finally:
        executor.close()
