"""Several short trials per Dask task (daskhpo.engine.packed), on a real in-process cluster."""

from __future__ import annotations

import pytest

import daskhpo


def objective(x):
    if x > 0.9:
        raise ValueError("too large")
    return x**2


def test_packed_trials_are_recorded_one_by_one(client):
    exp = daskhpo.build_experiment("packed", {"x": "uniform(-1, 1)"}, seed=3)
    exp.workon(objective, max_trials=40, client=client, trials_per_task=4)
    records = exp.records()
    finished = [r for r in records if r.status == "completed"]
    assert len(finished) == 40
    assert len({r.trial for r in records}) == len(records)
    broken = [r for r in records if r.status == "broken"]
    assert all("too large" in r.error for r in broken)
    # trials of one pack ran one after the other on one worker
    assert all(r.ended >= r.started for r in records)


def test_packed_reports_reach_the_optimizer(client):
    def reporting(x):
        for step in (1, 3, 9):
            daskhpo.report(step, x**2 + 1 / step)
        return x**2

    exp = daskhpo.build_experiment(
        "packed-asha", {"x": "uniform(-1, 1)"},
        algorithm=("asha", {"min_resource": 1, "max_resource": 9, "reduction_factor": 3}), seed=0,
    )
    exp.workon(reporting, max_trials=24, client=client, trials_per_task=3)
    statuses = {r.status for r in exp.records()}
    assert statuses <= {"completed", "pruned"} and len(exp.records()) >= 24


def test_trials_per_task_must_be_positive(client):
    exp = daskhpo.build_experiment("bad", {"x": "uniform(-1, 1)"}, seed=0)
    with pytest.raises(ValueError, match="trials_per_task"):
        exp.workon(objective, max_trials=2, client=client, trials_per_task=0)


def slow(x):
    import time

    time.sleep(0.25)
    return x


def test_packed_trials_run_on_workers_whose_end_is_known():
    # workers with a Dask lifetime: their ends are known, yet packed executors opt out of
    # walltime-aware admission (a pack cannot be placed per trial): no workers= reaches them
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, lifetime="2h",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)
        exp = daskhpo.build_experiment("packed-lifetime", {"x": "uniform(-0.5, 0.5)"}, seed=1)
        # trials long enough that the ends are known (the watchdog asks within a second) long before the end
        exp.workon(slow, max_trials=16, client=client, trials_per_task=2)
        records = exp.records()
        assert len([r for r in records if r.status == "completed"]) == 16
