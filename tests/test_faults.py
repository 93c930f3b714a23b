"""Faults injected for real: processes killed with SIGKILL, schedulers gone, files damaged.

Every Dask process here is a child started by the test, in its own process group, and
killed by its id at the end, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter

import pytest

import daskhpo
from daskhpo import build_experiment, load_experiment
from daskhpo.engine import SchedulerLostError

SPACE = {"x": "uniform(-1, 1)"}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    # the objectives of this module must be importable by the worker processes
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.path.join(ROOT, "tests"), env.get("PYTHONPATH")) if p)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(args: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], env=child_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)


def kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.wait(10)


@contextlib.contextmanager
def dask_processes(n_workers: int):
    """A ``dask scheduler`` and ``n_workers`` ``dask worker`` processes (nanny, 1 thread)."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = {"scheduler": spawn(["-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                 "--port", str(port), "--dashboard-address", ":0"])}
    try:
        for i in range(n_workers):
            procs[f"worker-{i}"] = spawn(["-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                          "--no-dashboard", "--name", f"w{i}"])
        yield address, procs
    finally:
        for proc in procs.values():
            kill_group(proc)


def slow_square(x):
    time.sleep(0.1)
    return x * x


def wait_for(condition, timeout: float, what: str) -> None:
    """Poll ``condition()`` until it holds; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


# -- the scheduler goes away ---------------------------------------------------------------
def test_scheduler_killed_mid_run_stops_within_worker_timeout_and_resumes(tmp_path):
    from distributed import Client

    path = str(tmp_path / "sched.nc")
    with dask_processes(2) as (address, procs):
        client = Client(address, timeout=6)  # also how long it tries to reconnect
        try:
            client.wait_for_workers(2, timeout=30)
            exp = build_experiment("sched", SPACE, storage=path, seed=0)
            killed: list[float] = []

            def kill_scheduler(record):
                if len(exp.records()) >= 6 and not killed:
                    os.killpg(procs["scheduler"].pid, signal.SIGKILL)
                    killed.append(time.monotonic())

            exp.subscribe(kill_scheduler)
            with pytest.raises(SchedulerLostError, match="lost the connection to the Dask scheduler"):
                exp.workon(slow_square, max_trials=500, client=client, worker_timeout=4)
            waited = time.monotonic() - killed[0]
            print(f"scheduler killed after {len(exp.records())} trials; workon raised {waited:.1f} s later")
            assert waited < 4 + 3, waited  # worker_timeout, plus a watchdog tick and the snapshot
            done = len([r for r in exp.records() if r.status == "completed"])
            exp.close()
        finally:
            t = time.monotonic()
            with contextlib.suppress(Exception):
                client.close(timeout=2)
            print(f"client closed in {time.monotonic() - t:.1f} s")
    stored = load_experiment(path).records()
    assert len([r for r in stored if r.status == "completed"]) == done >= 6
    assert not [r for r in stored if r.status not in ("completed",)]
    from distributed import LocalCluster

    # a new cluster (in-process here: starting processes again only costs time)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        resumed = build_experiment("sched", SPACE, storage=path)
        resumed.workon(slow_square, max_trials=done + 6, client=client)
        records = resumed.records()
        assert sum(r.status == "completed" for r in records) == done + 6
        assert Counter(r.trial for r in records).most_common(1)[0][1] == 1
        resumed.close()


# -- worker processes killed mid-trial -----------------------------------------------------
def test_worker_processes_sigkilled_mid_trial_several_times(tmp_path):
    """Four SIGKILLs of a worker process, each once both workers run trials again; then a drain.

    Paced by finished trials, not by the clock: a nanny's restart takes seconds on a loaded
    machine, while the other worker goes on finishing trials.
    """
    from distributed import Client

    from daskhpo.engine import clear_drain, request_drain

    rng = random.Random(11)
    kills: list[int] = []
    with dask_processes(2) as (address, _), Client(address, timeout=20) as client:
        client.wait_for_workers(2, timeout=30)
        exp = build_experiment("kill", SPACE, storage=str(tmp_path / "kill.nc"), seed=0)
        stop = threading.Event()
        progress = threading.Condition()
        finished = [0]

        def count(record) -> None:
            with progress:
                finished[0] += 1
                progress.notify_all()

        exp.subscribe(count)

        def both_workers_busy() -> dict:
            """The two worker processes' pids, once both are up (a nanny restarts the one
            killed) and 4 more trials finished since."""
            deadline = time.monotonic() + 120
            while True:
                assert time.monotonic() < deadline, "the killed worker did not come back within 120 s"
                try:
                    pids = client.run(os.getpid, on_error="ignore")
                except Exception:
                    pids = {}
                if len(pids) == 2:
                    break
                stop.wait(0.1)
            with progress:
                target = finished[0] + 4
                assert progress.wait_for(lambda: finished[0] >= target, timeout=120), "no progress in 120 s"
            return pids

        def mid_trial(pids: dict) -> list:
            """The workers (of ``pids``) running a trial now, so that a kill is mid-trial."""
            deadline = time.monotonic() + 120
            while True:
                assert time.monotonic() < deadline, "no worker ran a trial for 120 s"
                try:
                    running = client.run(lambda dask_worker: dask_worker.state.executing_count,
                                         workers=list(pids), on_error="ignore")
                except Exception:
                    running = {}
                busy = [w for w, n in running.items() if n]
                if busy:
                    return busy
                stop.wait(0.01)

        def killer():
            try:
                for _ in range(4):
                    pids = both_workers_busy()  # never kill both
                    pid = pids[rng.choice(sorted(mid_trial(pids)))]
                    os.kill(pid, signal.SIGKILL)  # a worker process, grandchild of this test
                    kills.append(pid)
                both_workers_busy()
            finally:
                request_drain("four kills done", grace=120)  # the trials in flight finish

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        try:
            exp.workon(slow_square, max_trials=1000, client=client, retries=5, worker_timeout=30)
        finally:
            stop.set()
            thread.join(10)
            clear_drain()
        records = exp.records()
        exp.close()
    print(f"{len(kills)} worker kills; {sum(r.attempts > 1 for r in records)} trials ran again; "
          f"{sum(r.status == 'completed' for r in records)} completed")
    assert len(kills) == 4, kills
    counts = Counter(r.trial for r in records)
    assert max(counts.values()) == 1  # every trial recorded once
    assert {r.status for r in records} == {"completed"} and len(records) >= 5 * 4  # none lost or broken
    assert sum(r.attempts > 1 for r in records) >= 1  # some trial did run again after a kill
    stored = load_experiment(str(tmp_path / "kill.nc")).records()
    assert [(r.trial, r.status) for r in stored] == [(r.trial, r.status) for r in records]


# -- two processes on one storage path -----------------------------------------------------
HOLDER = textwrap.dedent('''
    import sys, time
    import daskhpo
    from daskhpo.engine import FakeExecutor

    def slow(x):
        time.sleep(0.05)
        return x * x

    exp = daskhpo.build_experiment("two", {"x": "uniform(-1, 1)"}, storage=sys.argv[1], seed=0,
                                   snapshot_interval=1e9)
    print("RUNNING", flush=True)
    exp.run(FakeExecutor(slow, slots=2), max_trials=100000)
''')


def start_script(tmp_path, source: str, *args: str, name: str = "script.py") -> subprocess.Popen:
    script = tmp_path / name
    script.write_text(source)
    return subprocess.Popen([sys.executable, str(script), *args], env=child_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_line(proc: subprocess.Popen, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if text in line:
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"script exited ({proc.returncode}): {proc.stderr.read()[-2000:]}")
    raise AssertionError(f"no {text!r} within {timeout} s")


def test_two_processes_on_one_storage_then_sigkill_and_resume(tmp_path):
    path = str(tmp_path / "two.nc")
    holder = start_script(tmp_path, HOLDER, path)
    try:
        wait_line(holder, "RUNNING")
        journal = tmp_path / "two.nc.journal"
        wait_for(lambda: journal.exists() and journal.read_text().count('"event": "trial"') >= 5, 60,
                 "5 trials in the holder's journal")
        calls = []
        with pytest.raises(daskhpo.StorageLocked) as info:
            exp = build_experiment("two", SPACE, storage=path, seed=0)
            exp.run(daskhpo.engine.FakeExecutor(lambda x: calls.append(x) or x), max_trials=5)
        assert str(holder.pid) in str(info.value) and socket.gethostname() in str(info.value)
        assert calls == []  # refused before running any trial
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(10)
    finally:
        kill_group(holder)
    third = build_experiment("two", SPACE, storage=path)
    before = len(third.records())
    assert before >= 5  # what the killed holder journaled
    third.run(daskhpo.engine.FakeExecutor(lambda x: x * x), max_trials=before + 5)
    records = third.records()
    assert len(records) == before + 5 and max(Counter(r.trial for r in records).values()) == 1
    third.close()


# -- damaged files -------------------------------------------------------------------------
CRASHER = textwrap.dedent('''
    import os, signal, sys
    import daskhpo
    from daskhpo.engine import FakeExecutor

    crash, n = sys.argv[2] == "crash", int(sys.argv[3])
    calls = []

    def objective(x):
        calls.append(x)
        if crash and len(calls) > n:
            os.kill(os.getpid(), signal.SIGKILL)  # mid-run: the events stay in the journal
        return x * x

    exp = daskhpo.build_experiment("crash", {"x": "uniform(-1, 1)"}, storage=sys.argv[1], seed=0,
                                   snapshot_interval=1e9)
    exp.run(FakeExecutor(objective, slots=2), max_trials=2 * n)
    exp.close()
''')


def run_script(tmp_path, source: str, *args: str) -> int:
    script = tmp_path / "crasher.py"
    script.write_text(source)
    return subprocess.run([sys.executable, str(script), *args], env=child_env(), timeout=120,
                          capture_output=True).returncode


def test_corrupt_journal_line_in_the_middle_is_a_clear_error_and_nothing_is_changed(tmp_path):
    import hashlib

    path = str(tmp_path / "j.nc")
    assert run_script(tmp_path, CRASHER, path, "crash", "10") == -signal.SIGKILL
    journal = tmp_path / "j.nc.journal"
    lines = journal.read_bytes().split(b"\n")
    assert len(lines) > 6
    lines[4] = lines[4][: len(lines[4]) // 2] + b"\x00garbage"
    journal.write_bytes(b"\n".join(lines))
    data = [tmp_path / "j.nc", journal]  # (the lock's sidecar comes and goes with the lock)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in data}
    with pytest.raises(ValueError, match=r"j\.nc\.journal.*line 5"):
        build_experiment("crash", SPACE, storage=path)
    with pytest.raises(ValueError, match=r"line 5"):
        load_experiment(path)
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in data}
    assert after == before  # file bytes untouched


def test_truncated_snapshot_is_corrupt_storage_naming_the_file(tmp_path):
    from daskhpo.store.errors import CorruptStorage

    path = tmp_path / "t.nc"
    assert run_script(tmp_path, CRASHER, str(path), "clean", "10") == 0
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptStorage) as info:
        build_experiment("crash", SPACE, storage=str(path))
    assert repr(str(path)) in str(info.value)
    assert path.read_bytes() == data[: len(data) // 2]


def test_damaged_snapshot_moved_aside_as_told_recovers_every_journaled_trial(tmp_path):
    # The reproduction: a driver SIGKILL-ed after 44 trials (snapshot: 0 trials), then
    # the snapshot damaged; doing what CorruptStorage says must not lose the journal's trials.
    from daskhpo.store.errors import CorruptStorage

    path = tmp_path / "k.nc"
    assert run_script(tmp_path, CRASHER, str(path), "crash", "44") == -signal.SIGKILL
    journal = tmp_path / "k.nc.journal"
    journaled = sum(1 for line in journal.read_text().splitlines() if '"event": "trial"' in line)
    assert journaled >= 40  # (the kill comes in the 45th call: one or two were in flight)
    path.write_bytes(path.read_bytes()[:100])  # damaged
    with pytest.raises(CorruptStorage) as info:
        build_experiment("crash", SPACE, storage=str(path))
    assert "move" in str(info.value) and "journal" in str(info.value)
    os.rename(path, tmp_path / "k.nc.damaged")  # as the message says, keeping the journal
    assert len(load_experiment(str(path)).records()) == journaled
    exp = build_experiment("crash", SPACE, storage=str(path))
    assert len(exp.records()) == journaled
    exp.close()
    records = load_experiment(str(path)).records()
    assert len(records) == journaled and len({r.trial for r in records}) == journaled


# -- the client killed three times, ASHA with 4 trials in flight ---------------------------
ASHA_SPACE = {"x": "uniform(-1, 1)", "epochs": "fidelity(1, 9, base=3)"}
ASHA = ("asha", {"min_resource": 1, "max_resource": 9, "reduction_factor": 3})
ASHA_SCRIPT = textwrap.dedent('''
    import json, sys, time
    import daskhpo
    from distributed import Client, LocalCluster

    SPACE = {"x": "uniform(-1, 1)", "epochs": "fidelity(1, 9, base=3)"}
    ASHA = ("asha", {"min_resource": 1, "max_resource": 9, "reduction_factor": 3})

    def objective(x, epochs):
        time.sleep(0.1 * epochs)
        return (x - 0.3) ** 2 + 1.0 / epochs

    if __name__ == "__main__":
        path, max_trials, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
        with LocalCluster(n_workers=4, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \\
                Client(cluster) as client:
            exp = daskhpo.build_experiment("asha", SPACE, algorithm=ASHA, storage=path, seed=3,
                                           snapshot_interval=0.3)
            print("RUNNING", len(exp.records()), flush=True)
            exp.subscribe(lambda record: print("FINISHED", record.trial, flush=True))  # once on disk
            exp.workon(objective, max_trials=max_trials, client=client, n_workers=4)
            bracket = exp.optimizer.brackets[0]
            with open(out, "w") as fh:
                json.dump({"results": [sorted([c, v[0], v[1]] for c, v in r.items()) for r in bracket.results],
                           "promoted": [sorted(p) for p in bracket.promoted]}, fh)
            exp.close()
''')


def rungs_of_fresh_asha(path: str) -> dict:
    from daskhpo.experiment import as_report, as_trial
    from daskhpo.optimizers import make_optimizer
    from daskhpo.records import TrialRecord
    from daskhpo.store.history import read_history

    space, attrs, events = read_history(path)
    fresh = make_optimizer(ASHA, space, int(attrs["seed"]))
    params = {e.trial: e.params for e in events if isinstance(e, TrialRecord)}
    for event in events:  # in the order the live optimizer saw them
        if isinstance(event, TrialRecord):
            fresh.tell(as_trial(event))
        else:
            fresh.report(as_report(event, params[event.trial]))
    bracket = fresh.brackets[0]
    return {"results": [sorted([c, v[0], v[1]] for c, v in r.items()) for r in bracket.results],
            "promoted": [sorted(p) for p in bracket.promoted]}


def test_client_sigkilled_three_times_with_asha_resumes_without_loss(tmp_path):
    import json

    path, out = str(tmp_path / "asha.nc"), str(tmp_path / "rungs.json")
    rng = random.Random(5)
    completed: set[int] = set()
    history = []
    for _ in range(3):
        proc = start_script(tmp_path, ASHA_SCRIPT, path, "100", out, name="asha_client.py")
        try:
            wait_line(proc, "RUNNING")
            for _ in range(rng.randint(4, 10)):  # killed mid-run, after a few more trials finished
                wait_line(proc, "FINISHED")
            assert proc.poll() is None, "the run ended before the kill"
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            kill_group(proc)
        records = load_experiment(path).records()
        counts = Counter(r.trial for r in records)
        assert max(counts.values(), default=1) == 1, counts  # each trial once after every kill
        done = {r.trial for r in records if r.status in ("completed", "pruned")}
        assert completed <= done  # nothing completed before is lost
        completed = done
        history.append(len(done))
    proc = start_script(tmp_path, ASHA_SCRIPT, path, "100", out, name="asha_client.py")
    try:
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        kill_group(proc)
    assert proc.returncode == 0, stderr[-3000:]
    records = load_experiment(path).records()
    assert max(Counter(r.trial for r in records).values()) == 1
    assert completed <= {r.trial for r in records}
    assert sum(r.status in ("completed", "pruned") for r in records) == 100
    with open(out) as fh:
        live = json.load(fh)
    print(f"finished trials after each kill: {history}; final: {len(records)} trials")
    assert live == rungs_of_fresh_asha(path)  # the resumed ASHA decided as its event log says
    assert any(live["promoted"])
    assert 0 < history[-1] < 100, history  # the killed runs got somewhere, and were killed mid-run
