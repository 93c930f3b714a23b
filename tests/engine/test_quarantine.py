"""Faulty-node quarantine: a worker where every trial breaks is taken out, nothing is lost."""

from __future__ import annotations

import json
import os

import pytest

from daskhpo import TooManyBrokenTrials, build_experiment, load_experiment
from daskhpo.engine import FakeExecutor
from daskhpo.engine.quarantine import Quarantine, worker_host

SPACE = {"x": "uniform(-1, 1)"}
BAD = "fake-worker-2"


def square(x):
    return x * x


def bad_node(trial, attempt, worker):
    return "break" if worker == BAD else None


def by_x(params):
    return 1.0 + abs(params["x"])


def test_faulty_worker_is_quarantined_and_its_trials_run_elsewhere(tmp_path):
    executor = FakeExecutor(square, duration=by_x, workers=3, faults=bad_node)
    exp = build_experiment("q", SPACE, storage=str(tmp_path / "q.nc"), seed=1)
    exp.run(executor, max_trials=40)
    records = exp.records()
    assert sum(r.status == "completed" for r in records) == 40
    assert all(r.status == "completed" for r in records)  # nothing counted broken
    assert executor.quarantined == [BAD]
    (entry,) = exp.quarantined
    assert entry["worker"] == BAD and "illegal memory access" in entry["why"]
    assert len(entry["trials"]) >= 3
    rerun = {r.trial: r for r in records if r.trial in entry["trials"]}
    assert all(r.attempts == 2 and r.worker != BAD for r in rerun.values())
    assert sorted(r.trial for r in records) == list(range(len(records)))  # each trial once
    exp.close()
    loaded = load_experiment(str(tmp_path / "q.nc"))
    assert [q["worker"] for q in loaded.quarantined] == [BAD]
    assert json.loads(loaded.attrs["quarantined"])[0]["host"] == BAD


def test_adaptive_cluster_growing_after_a_quarantine_still_gets_trials():
    executor = FakeExecutor(square, workers=3, faults=bad_node)
    exp = build_experiment("q", SPACE, seed=2)
    exp.run(executor, max_trials=10, n_workers=2)
    assert executor.quarantined == [BAD]
    new = executor.add_worker()
    exp.run(executor, max_trials=30, n_workers=3)
    assert sum(r.status == "completed" for r in exp.records()) == 30
    assert any(r.worker == new for r in exp.records())
    assert not any(r.worker == BAD and r.status == "completed" for r in exp.records())


def test_a_configuration_failing_everywhere_is_still_broken_and_counted():
    def fails(x):
        raise ValueError("bad configuration")

    exp = build_experiment("q", SPACE, seed=3)
    executor = FakeExecutor(fails, workers=3)
    with pytest.raises(TooManyBrokenTrials):
        exp.run(executor, max_trials=20, max_broken=3)
    assert executor.quarantined == []
    assert exp.quarantined == []
    assert 4 <= len(exp.records()) <= 7 and all(r.status == "broken" for r in exp.records())


def test_sporadic_bad_configurations_do_not_quarantine_healthy_workers(caplog):
    caplog.set_level("INFO", logger="daskhpo.engine.quarantine")

    def fails_for_large(x):
        if x > 0.2:
            raise ValueError("x too large")
        return x * x

    exp = build_experiment("q", SPACE, seed=4)
    executor = FakeExecutor(fails_for_large, duration=by_x, workers=3)
    exp.run(executor, max_trials=30, max_broken=100)
    assert "also seen on other workers" in caplog.text  # streaks happened, judged as the configurations' fault
    broken = [r for r in exp.records() if r.status == "broken"]
    assert len(broken) >= 10 and all("x too large" in r.error for r in broken)
    assert sum(r.status == "completed" for r in exp.records()) == 30
    assert executor.quarantined == []  # the same error on every worker: the configurations' fault


def test_value_dependent_errors_with_distinct_messages_never_retire_a_worker(caplog):
    caplog.set_level("INFO", logger="daskhpo.engine.quarantine")

    def fails_naming_x(x):
        if x > 0.0:
            raise ValueError(f"x={x!r} diverged")
        return x * x

    exp = build_experiment("q", SPACE, seed=6)
    executor = FakeExecutor(fails_naming_x, duration=by_x, workers=3)
    exp.run(executor, max_trials=20, max_broken=1000)
    assert executor.quarantined == [] and exp.quarantined == []
    assert "not quarantined" in caplog.text  # a suspect was cleared (re-runs broke elsewhere, or it finished one)
    records = exp.records()
    assert sum(r.status == "completed" for r in records) == 20
    assert all("diverged" in r.error for r in records if r.status == "broken")
    assert max(r.attempts for r in records) == 2  # re-run once, elsewhere, then recorded broken


def test_quarantine_off_keeps_the_old_behaviour():
    executor = FakeExecutor(square, duration=by_x, workers=3, faults=bad_node)
    exp = build_experiment("q", SPACE, seed=1)
    with pytest.raises(TooManyBrokenTrials):
        exp.run(executor, max_trials=40, quarantine_after=None)
    assert executor.quarantined == []


def test_timeouts_do_not_count_and_the_option_is_checked():
    with pytest.raises(ValueError, match="quarantine_after"):
        Quarantine(0)
    assert worker_host("tcp://10.0.0.5:4321") == "10.0.0.5"
    executor = FakeExecutor(square, duration=lambda p: 5.0 if p["x"] > 0 else 1.0, workers=3, trial_timeout=2.0)
    exp = build_experiment("q", SPACE, seed=5)
    exp.run(executor, max_trials=10, max_broken=100)
    assert executor.quarantined == []


# -- a real cluster: one of three worker processes has a "bad GPU" -----------------------
def cuda_on_bad_worker(x):
    import time

    if os.environ.get("DASKHPO_TEST_BAD_GPU") == "1":
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
    time.sleep(0.05)
    return x * x


def test_real_cluster_with_one_faulty_worker_process(tmp_path):
    from distributed import Client, Nanny, Scheduler, SpecCluster

    worker = {"cls": Nanny, "options": {"nthreads": 1}}
    bad = {"cls": Nanny, "options": {"nthreads": 1, "env": {"DASKHPO_TEST_BAD_GPU": "1"}}}
    workers = {"good-0": worker, "good-1": worker, "bad": bad}
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": ":0"}}
    with SpecCluster(workers=workers, scheduler=scheduler) as cluster, Client(cluster) as client:
        client.wait_for_workers(3, timeout=60)
        bad_address = next(a for a, w in client.scheduler_info(n_workers=-1)["workers"].items() if w["name"] == "bad")
        exp = build_experiment("real", SPACE, storage=str(tmp_path / "real.nc"), seed=7)
        exp.workon(cuda_on_bad_worker, max_trials=40, client=client)
        records = exp.records()
        assert sum(r.status == "completed" for r in records) == 40
        assert [r.status for r in records].count("lost") == 0
        assert [q["worker"] for q in exp.quarantined] == [bad_address]
        assert "illegal memory access" in exp.quarantined[0]["why"]
        assert all(r.worker != bad_address for r in records if r.status == "completed")
        assert bad_address not in client.scheduler_info(n_workers=-1)["workers"]
        again = {r.trial: r for r in records if r.trial in exp.quarantined[0]["trials"]}
        assert len(again) >= 3 and all(r.status == "completed" and r.attempts >= 2 for r in again.values())
        exp.close()


def test_slurm_cluster_new_jobs_exclude_a_quarantined_node():
    pytest.importorskip("dask_jobqueue")
    from dask_jobqueue import SLURMCluster

    from daskhpo.engine.dask_executor import _is_slurm, exclude_from_new_jobs

    with SLURMCluster(cores=1, memory="1GB", job_extra_directives=["--exclude=old1", "--qos=normal"],
                      scheduler_options={"dashboard_address": ":0"}) as cluster:
        assert _is_slurm(cluster)
        exclude_from_new_jobs(cluster, "gpu-node-7")
        exclude_from_new_jobs(cluster, "gpu-node-7")
        script = cluster.job_script()
        assert "#SBATCH --exclude=old1,gpu-node-7" in script and script.count("--exclude") == 1
        assert "#SBATCH --qos=normal" in script
        # the jobs the cluster creates from now on are made from the same options
        job = cluster.new_spec["cls"](**cluster.new_spec["options"])
        assert "--exclude=old1,gpu-node-7" in job.job_script()
