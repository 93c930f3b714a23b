"""Faulty-node quarantine: a worker where every trial breaks is taken out, nothing is lost."""

from __future__ import annotations

import json
import math
import os
from types import SimpleNamespace

import pytest

from daskhpo import TooManyBrokenTrials, build_experiment, load_experiment
from daskhpo.engine import FakeExecutor
from daskhpo.engine.quarantine import Quarantine, error_signature, worker_host
from daskhpo.records import TrialRecord

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


WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]


def test_value_dependent_errors_with_distinct_messages_never_retire_a_worker(caplog):
    caplog.set_level("INFO", logger="daskhpo.engine.quarantine")

    def fails_naming_x(x):
        if x > 0.0:  # half the space, each error its own (no number in it to blank)
            raise ValueError(f"{WORDS[int(x * 10)]} diverged")
        return x * x

    exp = build_experiment("q", SPACE, seed=6)
    executor = FakeExecutor(fails_naming_x, duration=by_x, workers=3)
    exp.run(executor, max_trials=20)  # the default max_broken goes on
    assert executor.quarantined == [] and exp.quarantined == []
    assert "the parameters' fault" in caplog.text  # a suspect was cleared: its failures reproduced elsewhere
    records = exp.records()
    assert sum(r.status == "completed" for r in records) == 20
    assert all("diverged" in r.error for r in records if r.status == "broken")
    assert max(r.attempts for r in records) == 2  # re-run once, elsewhere, then recorded broken


def test_quarantine_off_keeps_the_old_behaviour():
    executor = FakeExecutor(square, duration=by_x, workers=3, faults=bad_node)
    exp = build_experiment("q", SPACE, seed=1)
    with pytest.raises(TooManyBrokenTrials):
        exp.run(executor, max_trials=40, quarantine_after=None, max_broken=3)
    assert executor.quarantined == []
    # with the default max_broken, the bad node's failures do not stop the search either
    exp.run(FakeExecutor(square, duration=by_x, workers=3, faults=bad_node), max_trials=40, quarantine_after=None)
    assert sum(r.status == "completed" for r in exp.records()) == 40


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


# -- a faulty node or faulty parameters: do the failures reproduce elsewhere? -------------------
def _job(trial, source=None):
    return SimpleNamespace(plan=SimpleNamespace(trial=trial), quarantined_from=source)


def _outcome(trial, worker, error=None):
    status = "completed" if error is None else "broken"
    return TrialRecord(trial, {"x": 0.0}, status, objective=1.0 if error is None else math.nan, worker=worker,
                       error=error)


OOM = "Traceback (most recent call last):\n...\nMemoryError: CUDA out of memory with {} layers: tried {} GiB"
BAD_GPU = "RuntimeError: CUDA error: an illegal memory access was encountered"


def _healthy(guard, worker="w1", error=None):
    """``worker`` finishes a trial, after breaking one with ``error`` (if given)."""
    if error is not None:
        guard.judge(_job(100), _outcome(100, worker, error), None)
    ready, again = guard.judge(_job(101), _outcome(101, worker), None)
    assert again == []


def test_the_same_error_with_other_numbers_on_a_healthy_worker_is_the_parameters_fault():
    guard = Quarantine(3)
    _healthy(guard, error=OOM.format(5, "7.00"))
    for trial, size in [(2, "2.00"), (3, "3.25")]:
        assert guard.judge(_job(trial), _outcome(trial, "w0", OOM.format(5, size)), None) == ([], [])
    ready, again = guard.judge(_job(4), _outcome(4, "w0", OOM.format(5, "4.5")), None)
    assert again == [] and [r.trial for _j, r, _c in ready] == [2, 3, 4]  # recorded broken, nothing re-run
    assert not guard.suspects and not guard.quarantined


def test_a_failure_that_reproduces_elsewhere_clears_the_worker_even_if_another_rerun_finishes():
    guard = Quarantine(3)
    _healthy(guard)
    for trial in (2, 3):
        guard.judge(_job(trial), _outcome(trial, "w0", OOM.format(5, trial)), None)
    ready, again = guard.judge(_job(4), _outcome(4, "w0", OOM.format(5, 4)), None)
    assert ready == [] and [(j.plan.trial, w) for j, w in again] == [(2, "w0"), (3, "w0"), (4, "w0")]
    # the re-run of trial 2 finishes on w1 (a flaky failure): no verdict yet
    ready, again = guard.judge(_job(2, "w0"), _outcome(2, "w1"), None)
    assert [r.status for _j, r, _c in ready] == ["completed"] and "w0" not in guard.quarantined
    # the re-run of trial 3 breaks on w1 with the same error: the parameters' fault
    ready, again = guard.judge(_job(3, "w0"), _outcome(3, "w1", OOM.format(5, 9)), None)
    assert [r.status for _j, r, _c in ready] == ["broken"] and again == []
    assert guard.cleared == ["w0"] and not guard.suspects and not guard.quarantined
    ready, again = guard.judge(_job(4, "w0"), _outcome(4, "w1", OOM.format(5, 4)), None)
    assert [r.status for _j, r, _c in ready] == ["broken"] and not guard.quarantined


def test_a_worker_whose_failures_do_not_reproduce_anywhere_is_quarantined_once_every_rerun_ended():
    guard = Quarantine(3)
    _healthy(guard)
    for trial in (2, 3, 4):
        guard.judge(_job(trial), _outcome(trial, "w0", BAD_GPU), None)
    assert "w0" in guard.suspects
    guard.judge(_job(5), _outcome(5, "w0", BAD_GPU), None)  # broke there meanwhile: held
    guard.judge(_job(2, "w0"), _outcome(2, "w1"), None)
    guard.judge(_job(3, "w0"), _outcome(3, "w1", "ValueError: x out of range"), None)  # another error
    assert "w0" not in guard.quarantined
    ready, again = guard.judge(_job(4, "w0"), _outcome(4, "w1"), None)
    assert list(guard.quarantined) == ["w0"] and guard.quarantined["w0"]["trials"] == [2, 3, 4, 5]
    assert [(j.plan.trial, w) for j, w in again] == [(5, "w0")]  # what broke there meanwhile runs elsewhere


def test_a_faulty_node_is_suspected_even_when_a_parameter_failure_is_in_its_streak():
    guard = Quarantine(3)
    _healthy(guard, error=OOM.format(5, 1))
    guard.judge(_job(2), _outcome(2, "w0", BAD_GPU), None)
    guard.judge(_job(3), _outcome(3, "w0", OOM.format(5, 2)), None)
    ready, again = guard.judge(_job(4), _outcome(4, "w0", BAD_GPU), None)
    assert [r.trial for _j, r, _c in ready] == [3] and again == []  # the OOM is the parameters'
    ready, again = guard.judge(_job(5), _outcome(5, "w0", BAD_GPU), None)
    assert [j.plan.trial for j, _w in again] == [2, 4, 5] and "w0" in guard.suspects


def test_error_signatures_blank_numbers_only():
    assert error_signature(OOM.format(5, "2.00")) == error_signature(OOM.format(12, "1e-3"))
    assert error_signature("KeyError: 'a'") != error_signature("KeyError: 'b'")
    assert error_signature("at 0x7f3a2b1c: segfault") == "at #: segfault"


def oom_or_nan(x, layers):
    """A third of the space fails: out of memory (half of it) or a NaN loss (the other half)."""
    import time

    if layers == 5:
        if x < 0:
            raise MemoryError(f"CUDA out of memory with {layers} layers: tried to allocate {1 + x:.2f} GiB")
        return math.nan
    time.sleep(0.02)  # a success takes longer than a failure, as in real tuning
    return x * x


def test_real_cluster_a_third_of_the_space_failing_reaches_max_trials_and_quarantines_no_one(process_client,
                                                                                             tmp_path):
    space = {"x": "uniform(-1, 1)", "layers": "choices([3, 4, 5])"}
    exp = build_experiment("third", space, storage=str(tmp_path / "third.nc"), algorithm="random", seed=11)
    exp.workon(oom_or_nan, max_trials=40, client=process_client)  # every other setting its default
    records = exp.records()
    assert sum(r.status == "completed" for r in records) == 40
    broken = [r for r in records if r.status == "broken"]
    assert len(broken) >= 8 and all(r.params["layers"] == 5 for r in broken)
    assert {"MemoryError", "objective is nan"} == {("MemoryError" if "MemoryError" in r.error else r.error)
                                                   for r in broken}
    assert exp.quarantined == [] and not any(r.status == "lost" for r in records)
    assert len(process_client.scheduler_info(n_workers=-1)["workers"]) == 2  # no worker retired
    exp.close()


def test_held_trials_judged_when_another_worker_finishes_are_recorded_not_dropped():
    guard = Quarantine(3)
    for trial in (1, 2, 3):  # no worker has finished a trial yet: w0's three wait
        assert guard.judge(_job(trial), _outcome(trial, "w0", OOM.format(5, trial)), None) == ([], [])
    guard.judge(_job(4), _outcome(4, "w1", OOM.format(5, 4)), None)
    ready, again = guard.judge(_job(5), _outcome(5, "w1"), None)  # w1 finishes: the same error is the parameters'
    assert sorted(r.trial for _j, r, _c in ready) == [1, 2, 3, 4, 5] and again == [] and guard.held == 0
