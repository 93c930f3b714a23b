"""Exactly once, within ``retries``: worker processes killed for real, objective calls counted.

Every objective here appends one line per call (its trial id and task key) to a file, so the
tests count what actually ran, not only what was recorded:

* a recorded trial never runs again, even when the worker that computed it dies later
  (the scheduler recomputes a task whose result a client still holds);
* the objective runs at most ``1 + retries`` times per trial, whatever the scheduler does
  with lost tasks (its own ``allowed-failures`` would run one up to 4 times);
* ``sys.exit()``, ``KeyboardInterrupt`` and other ``BaseException`` s raised by an
  objective make its trial ``broken``; its worker lives.

The kills happen while no other trial is in flight (one slot), so every count is exact.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import Counter

import pytest
from distributed import Client

import daskhpo
from daskhpo.engine import TrialTask, run_trial
from daskhpo.reporting import current_trial

SPACE = {"x": "uniform(0, 1)"}


def calls(log_dir: str) -> Counter:
    """How many times the objective ran, by trial id, so far."""
    path = os.path.join(log_dir, "calls")
    if not os.path.exists(path):
        return Counter()
    with open(path) as f:
        return Counter(int(line.split()[0]) for line in f if line.strip())


def log_call(log_dir: str) -> int:
    """Append this call's trial id and task key to the log; the trial id.

    One short write per call: whole lines, even when the process is killed right after.
    """
    from distributed import get_worker

    trial = current_trial()
    with open(os.path.join(log_dir, "calls"), "a") as f:
        f.write(f"{trial} {get_worker().get_current_task()}\n")
    return trial


def counted(x: float, log_dir: str) -> float:
    log_call(log_dir)
    time.sleep(0.05)
    return x


def first_trial_kills_its_worker(x: float, log_dir: str) -> float:
    """The first trial to run kills its worker process at every call, at once."""
    trial = log_call(log_dir)
    victim = os.path.join(log_dir, "victim")
    try:
        fd = os.open(victim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.write(fd, str(trial).encode())
        os.close(fd)
    except FileExistsError:
        pass
    with open(victim) as f:
        if f.read() == str(trial):
            os._exit(1)
    return x


class Stop(BaseException):
    """A BaseException of the objective's own."""


def exits_or_interrupts(x: float, log_dir: str) -> float:
    trial = log_call(log_dir)
    if trial == 1:
        sys.exit(3)
    if trial == 2:
        raise KeyboardInterrupt
    if trial == 3:
        raise Stop("stop here")
    return x




def every_worker_idle(client: Client) -> None:
    """Return once each worker's thread is free: whatever still ran there (a re-run) has ended.

    A task pinned to each worker starts only when its one thread is free.
    """
    workers = list(client.nthreads())
    probes = [client.submit(os.getpid, workers=[w], allow_other_workers=False, pure=False) for w in workers]
    client.gather(probes)


def worker_gone(client: Client, address: str, pid: int) -> bool:
    """Whether the scheduler removed the worker at ``address`` (or it is back with a new process)."""
    if address not in client.nthreads():
        return True
    try:
        return client.run(os.getpid, workers=[address], on_error="ignore").get(address, pid) != pid
    except Exception:
        return False


def test_a_recorded_trial_never_runs_again_when_its_worker_dies_later(nanny_client, tmp_path):
    """Kill the worker that computed the last recorded trial: the scheduler must not run it again.

    Before: the finished future was still held while the loop waited for the next one, and
    the scheduler recomputed it elsewhere: 13 calls for 12 recorded trials.
    """
    killed: list[str] = []

    def kill_the_worker_of_the_sixth(record) -> None:
        if record.trial != 5 or killed:
            return
        pid = nanny_client.run(os.getpid, workers=[record.worker])[record.worker]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while not worker_gone(nanny_client, record.worker, pid):  # the scheduler saw it leave
            assert time.monotonic() < deadline, "the scheduler did not see the worker leave in 120 s"
            time.sleep(0.05)
        killed.append(record.worker)

    exp = daskhpo.build_experiment("once", SPACE, seed=0)
    exp.subscribe(kill_the_worker_of_the_sixth)
    exp.workon(counted, max_trials=12, client=nanny_client, n_workers=1, log_dir=str(tmp_path))
    every_worker_idle(nanny_client)
    records = exp.records()
    assert killed, "the worker of trial 5 was not killed"
    assert len(records) == 12 and {r.status for r in records} == {"completed"}
    assert [r.attempts for r in records] == [1] * 12
    ran = calls(str(tmp_path))
    assert ran == {r.trial: 1 for r in records}, ran
    assert sum(ran.values()) == 12


@pytest.mark.parametrize("retries", [0, 1, 2])
def test_an_objective_that_kills_its_worker_runs_at_most_1_plus_retries_times(nanny_client, tmp_path, retries):
    """``os._exit`` in the objective, every time, at once: exactly ``1 + retries`` calls.

    Before: the scheduler re-ran the lost task itself (up to ``allowed-failures`` + 1 = 4
    times), unseen when the worker died before its start event left: 3 or 4 calls with
    ``retries=1``.
    """
    exp = daskhpo.build_experiment(f"bound-{retries}", SPACE, seed=0)
    exp.workon(first_trial_kills_its_worker, max_trials=2, client=nanny_client, n_workers=1, retries=retries,
               worker_timeout=120, log_dir=str(tmp_path))
    every_worker_idle(nanny_client)
    records = exp.records()
    with open(tmp_path / "victim") as f:
        victim = int(f.read())
    lost = [r for r in records if r.trial == victim]
    assert len(lost) == 1 and lost[0].status == "lost" and lost[0].attempts == 1 + retries
    assert f"after {1 + retries} attempts" in lost[0].error
    others = [r for r in records if r.trial != victim]
    assert len(others) == 2 and all(r.status == "completed" and r.attempts == 1 for r in others)
    ran = calls(str(tmp_path))
    assert ran == {victim: 1 + retries, **{r.trial: 1 for r in others}}


def test_sys_exit_and_keyboard_interrupt_in_the_objective_break_the_trial_not_the_worker(nanny_client, tmp_path):
    """Before: each killed its worker process (recorded lost after 4 workers), then NoWorkersError."""
    pids = nanny_client.run(os.getpid)
    exp = daskhpo.build_experiment("exits", SPACE, seed=0)
    exp.workon(exits_or_interrupts, max_trials=5, client=nanny_client, n_workers=2, max_broken=3,
               quarantine_after=None, log_dir=str(tmp_path))
    records = {r.trial: r for r in exp.records()}
    assert {t: r.status for t, r in records.items() if r.status != "completed"} == {1: "broken", 2: "broken",
                                                                                   3: "broken"}
    assert "SystemExit(3)" in records[1].error
    assert "KeyboardInterrupt()" in records[2].error
    assert "Stop('stop here')" in records[3].error
    assert all(r.attempts == 1 for r in records.values())
    assert calls(str(tmp_path)) == {t: 1 for t in records}
    assert nanny_client.run(os.getpid) == pids  # the same worker processes, none restarted


def raises(error: BaseException):
    def objective(**params):
        raise error

    return objective


@pytest.mark.parametrize("error", [SystemExit(2), KeyboardInterrupt(), GeneratorExit(), Stop("x")])
def test_run_trial_on_a_worker_thread_records_base_exceptions_as_broken(error):
    out = []
    thread = threading.Thread(target=lambda: out.append(run_trial(raises(error), TrialTask(0, {}, "k"), {})))
    thread.start()
    thread.join(60)
    record = out[0].record
    assert record.status == "broken" and type(error).__name__ in record.error
    assert "not the worker" in record.error


def test_keyboard_interrupt_on_the_main_thread_is_the_users_ctrl_c():
    with pytest.raises(KeyboardInterrupt):
        run_trial(raises(KeyboardInterrupt()), TrialTask(0, {}, "k"), {})


def test_packed_trials_of_a_worker_killing_objective_run_at_most_1_plus_retries_times(nanny_client, tmp_path):
    """Several trials per task: a pack started again by the scheduler is refused as a whole."""
    exp = daskhpo.build_experiment("packed-bound", SPACE, seed=0)
    exp.workon(first_trial_kills_its_worker, max_trials=4, client=nanny_client, n_workers=2, trials_per_task=2,
               retries=1, worker_timeout=120, log_dir=str(tmp_path))
    every_worker_idle(nanny_client)
    records = {r.trial: r for r in exp.records()}
    with open(tmp_path / "victim") as f:
        victim = int(f.read())
    assert records[victim].status == "lost" and records[victim].attempts == 2
    ran = calls(str(tmp_path))
    assert ran[victim] == 2
    assert all(ran[t] <= r.attempts for t, r in records.items()), (ran, records)
