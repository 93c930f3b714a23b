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


# -- the scheduler goes away ---------------------------------------------------------------
def test_scheduler_killed_mid_run_stops_within_worker_timeout_and_resumes(tmp_path):
    from distributed import Client

    path = str(tmp_path / "sched.nc")
    with dask_processes(2) as (address, procs):
        client = Client(address, timeout=20)
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
            assert waited < 4 + 3, waited  # worker_timeout, plus a watchdog tick and the snapshot
            done = len([r for r in exp.records() if r.status == "completed"])
            exp.close()
        finally:
            with contextlib.suppress(Exception):
                client.close(timeout=2)
    stored = load_experiment(path).records()
    assert len([r for r in stored if r.status == "completed"]) == done >= 6
    assert not [r for r in stored if r.status not in ("completed",)]
    with dask_processes(2) as (address, _), Client(address, timeout=20) as client:
        resumed = build_experiment("sched", SPACE, storage=path)
        resumed.workon(slow_square, max_trials=done + 6, client=client)
        records = resumed.records()
        assert sum(r.status == "completed" for r in records) == done + 6
        assert Counter(r.trial for r in records).most_common(1)[0][1] == 1
        resumed.close()
