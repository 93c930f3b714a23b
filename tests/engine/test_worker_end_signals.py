"""The nanny's warning signal reaches the worker of every nanny of a process (daskhpo.engine.worker_end).

Two worker processes stand in for the workers of two nannies of one ``dask worker
--nworkers 2`` process (this test's process): each says when it received ``SIGUSR1``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest

from daskhpo.engine import worker_end
from daskhpo.engine.worker_end import LeavingNanny

CHILD = """
import signal, sys
signal.signal(signal.SIGUSR1, lambda *a: (print("got USR1", flush=True), sys.exit(0)))
print("ready", flush=True)
signal.pause()
"""


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals")
def test_the_warning_signal_reaches_the_worker_of_every_nanny_in_the_process(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "1")  # the plugins act only inside a Slurm job
    before = signal.getsignal(signal.SIGUSR1)
    children = [subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    nannies = [LeavingNanny("USR1") for _ in children]
    try:
        for child in children:
            assert child.stdout.readline().strip() == "ready"
        for nanny, child in zip(nannies, children):
            nanny.setup(SimpleNamespace(pid=child.pid))  # the nanny's worker process
        os.kill(os.getpid(), signal.SIGUSR1)  # what Slurm's --signal=B:USR1 does to the nanny's process
        for child in children:
            assert child.wait(timeout=60) == 0  # it exits only on the signal
            assert child.stdout.readline().strip() == "got USR1"
    finally:
        for nanny in nannies:
            nanny.teardown(None)
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert signal.getsignal(signal.SIGUSR1) is before and not worker_end._NANNIES  # the last one restored it
