"""A real single-node Slurm for the tests: a session fixture around ``.ci/slurm-local.sh``.

The fixture starts slurmctld + slurmd on localhost with 2 fake GPUs and always stops them,
after cancelling every job.  Without Slurm (or without root) the Slurm tests are skipped,
except in CI (``CI=true``), where that is a failure: they must run there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
SCRIPT = TESTS.parent / ".ci" / "slurm-local.sh"
IN_CI = os.environ.get("CI", "").lower() == "true"
#: fake GPUs of the node (the script's SLURM_LOCAL_GPUS default)
GPUS = 2


@dataclass(frozen=True)
class LocalSlurm:
    gpus: int
    cpus: int


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"the Slurm tests must run in CI (CI=true), but {reason}", pytrace=False)
    pytest.skip(reason)


def jobs() -> list[str]:
    """Ids of every job in the queue (pending or running)."""
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True, timeout=30)
    return out.stdout.split()


def wait_for_no_jobs(timeout: float = 30.0) -> float:
    """Seconds until the queue is empty; AssertionError after ``timeout``."""
    start = time.monotonic()
    while jobs():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"Slurm jobs still queued after {timeout} s: {jobs()}")
        time.sleep(0.1)
    return time.monotonic() - start


def cancel_all_jobs() -> None:
    ids = jobs()
    if ids:
        subprocess.run(["scancel", *ids], check=False, timeout=30)
    wait_for_no_jobs()


def _script(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), command], capture_output=True, text=True, timeout=180,
        env={**os.environ, "SLURM_LOCAL_GPUS": str(GPUS)},
    )


@pytest.fixture(scope="session")
def slurm() -> LocalSlurm:
    """Slurm running on this machine for the whole session; stopped (jobs cancelled) after."""
    missing = [c for c in ("slurmctld", "slurmd", "sbatch", "squeue", "scancel") if shutil.which(c) is None]
    if missing:
        _unavailable(f"Slurm is not installed (missing {', '.join(missing)}; run '.ci/slurm-local.sh install')")
    if os.geteuid() != 0:
        _unavailable("starting a local Slurm needs root")
    started = _script("start")
    if started.returncode != 0:
        _script("stop")
        pytest.fail(f".ci/slurm-local.sh start failed:\n{started.stdout}{started.stderr}", pytrace=False)
    try:
        cpus = int(subprocess.run(["sinfo", "-h", "-N", "-o", "%c"], capture_output=True, text=True,
                                  check=True).stdout.split()[0])
        yield LocalSlurm(gpus=GPUS, cpus=cpus)
    finally:
        stopped = _script("stop")
        if stopped.returncode != 0:
            raise RuntimeError(f".ci/slurm-local.sh stop failed:\n{stopped.stdout}{stopped.stderr}")


@pytest.fixture
def slurm_cluster(slurm, tmp_path):
    """Build :class:`daskhpo.SlurmGPUCluster` objects sized for this machine; all closed after.

    Jobs of 1 core, 1 worker process and 1 GB, everything on the loopback interface, job
    logs in the test's ``tmp_path``.  After the test every job is gone from the queue.
    """
    from daskhpo import SlurmGPUCluster

    clusters = []

    def make(**kwargs):
        options = dict(
            cores=1, processes=1, memory="1GB", walltime="00:10:00", interface="lo",
            log_directory=str(tmp_path / "slurm-logs"), scheduler_options={"dashboard_address": ":0"},
            # The workers unpickle the tests' objectives by module name (test_slurm).
            # the test modules (their objectives are pickled by reference) and tests/ itself
            job_script_prologue=[f"export PYTHONPATH={TESTS / 'integrations'}:{TESTS}${{PYTHONPATH:+:$PYTHONPATH}}"],
        )
        options.update(kwargs)
        cluster = SlurmGPUCluster(**options)
        clusters.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in clusters:
            cluster.close()
        cancel_all_jobs()
