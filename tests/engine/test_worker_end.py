"""daskhpo.engine.worker_end without Slurm: reading a worker's end, and its failures.

``squeue`` is a small script on ``PATH`` printing what Slurm 22.05 prints (``%e`` of a
running job, ``Unknown``, an error); tests/integrations/test_slurm_lifecycle.py asks a real
Slurm.
"""

from __future__ import annotations

import os
import stat
import time

import pytest

from daskhpo.engine.worker_end import parse_slurm_time as parse_stamp
from daskhpo.engine.worker_end import worker_end_time


def test_time_stamps_are_local_time():
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(1796216368))
    assert parse_stamp(stamp) == 1796216368
    assert parse_stamp(f" {stamp}\n") == 1796216368


@pytest.mark.parametrize("text", ["Unknown", "N/A", "NONE", "", "2026-13-45T99:00:00", "tomorrow", "Invalid"])
def test_unknown_or_unreadable_times_are_none(text):
    assert parse_stamp(text) is None


@pytest.fixture
def squeue(tmp_path, monkeypatch):
    """Put a ``squeue`` that prints ``output`` (and exits ``rc``) first on PATH; returns a setter."""

    def make(output: str, rc: int = 0, delay: float = 0.0) -> None:
        path = tmp_path / "squeue"
        path.write_text(f"#!/bin/sh\nsleep {delay}\nprintf '%s' '{output}'\nexit {rc}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)

    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    return make


def stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(epoch))


def test_the_job_end_from_squeue(squeue):
    end = round(time.time()) + 3600
    squeue(stamp(end) + "\n")
    assert worker_end_time({"SLURM_JOB_ID": "7"}) == end


def test_the_end_time_variable_wins_over_squeue(squeue):
    squeue(stamp(time.time() + 3600))
    assert worker_end_time({"SLURM_JOB_ID": "7", "SLURM_JOB_END_TIME": "1796216368"}) == 1796216368


@pytest.mark.parametrize(
    "output, rc, delay",
    [("Unknown\n", 0, 0), ("", 1, 0), ("load_jobs error: Invalid job id specified\n", 1, 0),
     ("2026-12-02T12:59:28\n2026-12-02T13:59:28\n", 0, 0), ("garbage", 0, 0), (stamp(time.time() + 3600), 0, 3)],
)
def test_an_unknown_end_is_none_never_an_error(squeue, output, rc, delay):
    squeue(output, rc, delay)
    assert worker_end_time({"SLURM_JOB_ID": "7"}, timeout=0.5) is None


def test_no_time_limit_is_no_end(squeue):
    squeue(stamp(time.time() + 365 * 86400))  # a job without limit shows ending a year later
    assert worker_end_time({"SLURM_JOB_ID": "7"}) is None


def test_without_a_job_or_squeue(monkeypatch):
    assert worker_end_time({}) is None
    monkeypatch.setenv("PATH", "/nonexistent")
    assert worker_end_time({"SLURM_JOB_ID": "7"}) is None
    assert worker_end_time({"SLURM_JOB_END_TIME": "soon"}) is None


def test_the_dask_lifetime_and_the_earliest_end(squeue):
    assert worker_end_time({}, lifetime=600, started=1000.0) == 1600.0
    before = time.time()
    assert before + 600 <= worker_end_time({}, lifetime=600) <= time.time() + 600
    squeue(stamp(round(time.time()) + 3600))
    now = time.time()
    assert worker_end_time({"SLURM_JOB_ID": "7"}, lifetime=60, started=now) == now + 60  # the lifetime ends first
    assert worker_end_time({"SLURM_JOB_ID": "7"}, lifetime=7200, started=now) == round(now) + 3600


# -- a worker told to leave, on real worker processes (no Slurm: the signal handlers are only
# installed in a Slurm job; the plugin's leave() is what they call) ------------------------------

def counting(x: float, steps: int, delay: float) -> dict:
    import daskhpo

    state = daskhpo.load_checkpoint() or {"step": -1}
    for step in range(state["step"] + 1, steps):
        time.sleep(delay)
        daskhpo.report(step, x * step, checkpoint={"step": step})
    return {"objective": x}


def leave_now(dask_worker) -> int:
    from daskhpo.engine import worker_end

    return worker_end._PLUGIN.leave("a test")


def test_a_leaving_worker_preempts_its_trial_takes_nothing_new_and_closes():
    from distributed import Client, LocalCluster

    from daskhpo.engine.dask_executor import DaskExecutor
    from daskhpo.engine.executor import Completed, Reported, WorkersChanged
    from daskhpo.engine.worker import TrialTask
    from daskhpo.reporting import decode_checkpoint

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0") as cluster, Client(
        cluster, set_as_default=False
    ) as client:
        client.wait_for_workers(2, timeout=120)
        executor = DaskExecutor(client, counting, fn_kwargs={"steps": 200, "delay": 0.05})
        executor.open()
        try:
            executor.submit(TrialTask(0, {"x": 1.0}, "t0-a1"))
            changes, asked = [], None
            while True:
                event = executor.next_event()
                if isinstance(event, WorkersChanged):
                    changes.append(dict(event.ends))
                elif isinstance(event, Reported) and event.step >= 2 and asked is None:
                    left_at = time.time()
                    asked = client.run(leave_now, workers=[event.worker])[event.worker]
                    leaving = event.worker
                elif isinstance(event, Completed):
                    break
            outcome = event.outcome
            assert asked == 1 and outcome.record.status == "preempted"
            assert 2 <= outcome.record.last_step < 199 and decode_checkpoint(outcome.checkpoint) == {
                "step": outcome.record.last_step}
            # The client heard that it ends now (nothing else knew an end: no event before).
            assert changes and left_at - 1 <= changes[-1][leaving] <= time.time()
            # It closed itself once idle (with its nanny: nothing restarts it).
            deadline = time.monotonic() + 60
            while leaving in client.nthreads():
                assert time.monotonic() < deadline, "the leaving worker did not close"
                time.sleep(0.05)
            assert len(cluster.workers) == 1 or len(client.nthreads()) == 1
        finally:
            executor.close()
