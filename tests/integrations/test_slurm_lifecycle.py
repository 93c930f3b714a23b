"""Workers that come and go on schedule, on a real Slurm (single node, fake GPUs).

Each worker is a Slurm job of :class:`daskhpo.SlurmGPUCluster`, whose job script asks for
``--signal=B:USR1@<warning_seconds>`` and ``exec`` s the worker, whose plugins
(:mod:`daskhpo.engine.worker_end`) preempt the running trials on that signal or on
``SIGTERM``.  Fixtures from tests/slurm_local.py; at most 2 jobs at once on this machine.
"""

from __future__ import annotations

import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from distributed import Client

import daskhpo
from daskhpo.engine.worker_end import _end_here, parse_slurm_time
from tests import slurm_local
from tests.slurm_local import jobs, wait_for_no_jobs

slurm = slurm_local.slurm
slurm_cluster = slurm_local.slurm_cluster

SPACE = {"x": "uniform(-1, 1)"}
pytestmark = pytest.mark.timeout(180)


def job_info(job: str) -> dict[str, str]:
    """``scontrol show job``'s fields (a job stays there for minutes after it ended)."""
    out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, timeout=30, check=True)
    return dict(field.split("=", 1) for field in out.stdout.split() if "=" in field)


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


def checkpointed(x: float, marker_dir: str, steps: int, delay: float) -> dict:
    """Counts steps from its checkpoint; leaves a marker ``<job>_<step>`` for each step it runs."""
    state = daskhpo.load_checkpoint() or {"step": -1}
    job = os.environ["SLURM_JOB_ID"]
    first = state["step"] + 1
    for step in range(first, steps):
        time.sleep(delay)
        Path(marker_dir, f"{job}_{step}").write_text(repr(time.time()))
        daskhpo.report(step, x * step, checkpoint={"step": step})
    return {"objective": x, "resumed_from": float(first), "job": float(job)}


def test_each_worker_knows_when_its_job_ends(slurm_cluster):
    cluster = slurm_cluster(walltime="00:07:00")
    cluster.scale(jobs=2)
    with Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)
        job_of = client.run(lambda: os.environ["SLURM_JOB_ID"])
        ends = client.run(_end_here)
    assert set(ends) == set(job_of)
    for worker, (end, started) in ends.items():
        info = job_info(job_of[worker])
        start = parse_slurm_time(info["StartTime"])
        assert info["TimeLimit"] == "00:07:00" and end == start + 7 * 60 == parse_slurm_time(info["EndTime"])
        assert start - 1 <= started < end  # the worker's process started within its job


@pytest.mark.parametrize("how", ["warning", "scancel"])
def test_a_preempted_trial_resumes_on_the_next_worker_from_its_checkpoint(slurm_cluster, tmp_path, how):
    """``warning``: the signal of ``--signal=B:USR1@...`` (what Slurm sends before the time
    limit), here sent at once with ``scancel -b --signal=USR1``.  ``scancel``: a plain
    ``scancel``, which sends SIGTERM to every process of the job and SIGKILL ``KillWait``
    (5 s here) later; so do a preemption and the time limit itself."""
    steps, delay = 14, 0.4
    cluster = slurm_cluster()
    cluster.scale(jobs=2)
    markers = tmp_path / "markers"
    markers.mkdir()
    with Client(cluster) as client, ThreadPoolExecutor(1) as pool:
        client.wait_for_workers(2, timeout=60)
        exp = daskhpo.build_experiment(f"slurm-preempt-{how}", SPACE, seed=0)
        search = pool.submit(exp.workon, checkpointed, max_trials=1, client=client, n_workers=1,
                             resources=cluster.trial_resources, marker_dir=str(markers), steps=steps, delay=delay)
        wait_until(lambda: len(list(markers.iterdir())) >= 3 or search.done(), 60, "the trial's third step")
        assert not search.done(), search.result()
        job = next(markers.iterdir()).name.split("_")[0]
        signalled = time.time()
        command = ["scancel", "-b", "--signal=USR1", job] if how == "warning" else ["scancel", job]
        subprocess.run(command, check=True, timeout=30)
        search.result(timeout=120)
        # The job left by itself (its worker closed once idle), or at KillWait after a scancel.
        wait_until(lambda: job not in jobs(), 30, f"job {job} to end")
    ran = {}
    for marker in markers.iterdir():
        job_id, step = marker.name.split("_")
        ran.setdefault(job_id, {})[int(step)] = float(marker.read_text())
    assert set(ran) - {job}, f"the trial never ran on another job: {ran}"
    after = next(steps_ for job_id, steps_ in ran.items() if job_id != job)
    before = ran[job]
    resumed = min(after.values())
    print(f"\npreemption by {how}: the trial went on on the next job {resumed - signalled:.2f} s after the signal, "
          f"from step {min(after)} (step {max(before)} was the last before it)")
    # Nothing run twice, nothing skipped: it went on from the checkpoint of its last step.
    assert sorted(before) + sorted(after) == list(range(steps)) and min(after) == max(before) + 1
    (record,) = exp.records()
    assert record.status == "completed" and record.trial == 0 and record.attempts == 2
    assert record.metrics["resumed_from"] == min(after) and record.metrics["job"] != float(job)
    assert len(record.preempted) == 1 and record.preempted[0][1] == max(before)
    ds = exp.history
    reported = ds["reported_objective"].sel(trial=0).dropna("step")
    assert reported["step"].values.tolist() == list(range(steps))  # every step reported once


def timed(x: float, delay: float) -> dict:
    start = time.time()
    time.sleep(delay)
    return {"objective": x, "job": float(os.environ["SLURM_JOB_ID"]), "began": start}


@pytest.mark.timeout(240)
def test_trials_are_admitted_only_while_they_fit_before_the_job_ends(slurm_cluster):
    """A job of 1 minute (Slurm's least: this test takes ~80 s): trials of 3 s run on it while
    they fit before its end (the engine learns their run time), then it is retired and an
    adaptive cluster starts the next job.  Without walltime-aware admission, Slurm kills the
    first job at its limit mid-trial (TIMEOUT) and that trial runs again."""
    cluster = slurm_cluster(walltime="00:01:00", preempt_signal=None)
    cluster.adapt(minimum=0, maximum=1, interval="500ms", wait_count=2, target_duration="1s")
    with Client(cluster) as client:
        exp = daskhpo.build_experiment("slurm-walltime", SPACE, seed=0)
        # jobs of 1 minute: a trial may start with less than the default 60 s left
        exp.workon(timed, max_trials=18, client=client, n_workers=1, resources=cluster.trial_resources,
                   worker_timeout=90, delay=3.0, lifetimes=daskhpo.Lifetimes(min_left=5))
        wait_for_no_jobs(timeout=60)
    records = exp.records()
    assert len(records) == 18 and {r.status for r in records} == {"completed"}
    assert {r.attempts for r in records} == {1}  # none killed by a job's end
    by_job: dict[int, list] = {}
    for r in records:
        by_job.setdefault(int(r.metrics["job"]), []).append(r)
    assert len(by_job) >= 2, "the trials did not outlast one job: nothing to show"
    first = min(by_job)
    info = job_info(str(first))
    limit = parse_slurm_time(info["StartTime"]) + 60
    # retired before its limit (its worker left, the cluster cancelled the job), not killed at it
    assert info["JobState"] in ("COMPLETED", "CANCELLED"), info["JobState"]
    last = max(r.ended for r in by_job[first])
    assert last <= limit and parse_slurm_time(info["EndTime"]) <= limit
    print(f"\nwalltime: job {first} ran {len(by_job[first])} trials of 3 s; its last ended {limit - last:.1f} s "
          f"before its time limit, the job {limit - parse_slurm_time(info['EndTime']):.0f} s before")
