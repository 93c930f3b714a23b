"""daskhpo on a real Slurm cluster (single node, fake GPUs), through dask-jobqueue.

Session fixture ``slurm`` (tests/slurm_local.py) starts Slurm with ``.ci/slurm-local.sh``;
each test builds its own :class:`daskhpo.SlurmGPUCluster` (1 core, 1 worker, 1 GB per job,
at most 2 jobs at once on this 2-core machine) and leaves no job behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from distributed import Client

import daskhpo
from daskhpo.reporting import current_trial
from tests import slurm_local
from tests.helpers_rendezvous import Rendezvous
from tests.slurm_local import jobs, wait_for_no_jobs

# The fixtures (session Slurm, per-test clusters), from tests/slurm_local.py.
slurm = slurm_local.slurm
slurm_cluster = slurm_local.slurm_cluster

ROOT = Path(__file__).resolve().parents[2]
SPACE = {"x": "uniform(-1, 1)"}
pytestmark = pytest.mark.timeout(240)


def gpu_trial(x: float, delay: float) -> dict:
    time.sleep(delay)
    return {"objective": x**2, "job": float(os.environ["SLURM_JOB_ID"])}


def test_gpu_trials_spread_across_slurm_jobs(slurm_cluster):
    cluster = slurm_cluster(gpus_per_job=1)
    assert cluster.trial_resources == {"GPU": 1}
    cluster.scale(jobs=2)
    with Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)
        exp = daskhpo.build_experiment("slurm-gpu", SPACE, seed=0)
        exp.workon(gpu_trial, max_trials=6, client=client, n_workers=2, resources=cluster.trial_resources,
                   delay=0.5)
    ds = exp.history
    assert ds.sizes["trial"] == 6 and set(ds["status"].values) == {"completed"}
    assert len(set(ds["job"].values)) == 2 and len(set(ds["worker"].values)) == 2
    # Slurm gave each job its own (fake) GPU, and each trial recorded the one it saw.
    assert set(ds["gpu"].values) == {"0", "1"}
    gpu_of = {}
    for worker, gpu in zip(ds["worker"].values, ds["gpu"].values):
        gpu_of.setdefault(worker, set()).add(gpu)
    assert all(len(g) == 1 for g in gpu_of.values())


def counted_gpus(layers: int, x: float) -> dict:
    devices = daskhpo.current_trial_devices()
    return {"objective": x, "devices": float(len(devices.ids)),
            "job_gpus": float(len(os.environ["CUDA_VISIBLE_DEVICES"].split(",")))}


#: the half-GPU trials' meeting point, in the Slurm job's worker process (its 2 threads)
HALVES = Rendezvous()


def half_gpu_trial(layers: int, x: float) -> dict:
    devices = daskhpo.current_trial_devices()
    met = HALVES.meet(current_trial(), devices.cuda_visible_devices)
    return {"objective": x, "met": float(met), "share": devices.share}


def test_gpus_per_configuration_and_half_gpu_trials_on_one_slurm_job(slurm_cluster):
    """One job with the node's 2 fake GPUs and 2 threads: trials asking 1 or 2 GPUs by their
    configuration get those devices of the job; 0.5-GPU trials run two at a time on device 0."""
    cluster = slurm_cluster(gpus_per_job=2, cores=2)
    cluster.scale(jobs=1)
    with Client(cluster) as client:
        client.wait_for_workers(1, timeout=60)
        exp = daskhpo.build_experiment("slurm-per-config", {"layers": "randint(1, 16)", "x": "uniform(0, 1)"}, seed=3)
        exp.workon(counted_gpus, max_trials=8, client=client, progress=False,
                   resources=lambda p: {"GPU": 2 if p["layers"] > 8 else 1})
        ds = exp.history
        assert set(ds["status"].values) == {"completed"} and set(ds["job_gpus"].values) == {2.0}  # Slurm's "0,1"
        wanted = [2 if layers > 8 else 1 for layers in ds["layers"].values]
        assert ds["devices"].values.tolist() == wanted and set(wanted) == {1, 2}
        for want, gpu in zip(wanted, ds["gpu"].values):
            assert gpu == "0,1" if want == 2 else gpu in ("0", "1")

        halves = daskhpo.build_experiment("slurm-halves", {"layers": "randint(1, 16)", "x": "uniform(0, 1)"}, seed=0)
        halves.workon(half_gpu_trial, max_trials=6, client=client, progress=False, resources={"GPU": 0.5})
        ds = halves.history
        assert set(ds["status"].values) == {"completed"}
        assert ds["met"].values.tolist() == [1.0] * 6 and set(ds["share"].values) == {0.5}
        assert set(ds["gpu"].values) == {"0"}  # packed onto one device, the other stays whole


class JobCounter:
    """Samples the length of Slurm's queue in a thread, to see a cluster grow and shrink."""

    def __init__(self, period: float = 0.2) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period,), daemon=True)

    def _run(self, period: float) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), len(jobs())))
            self._stop.wait(period)

    def __enter__(self) -> JobCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def test_adaptive_cluster_grows_from_zero_jobs_and_shrinks_back(slurm_cluster):
    cluster = slurm_cluster(gpus_per_job=1)
    cluster.adapt(minimum=0, maximum=2, interval="500ms", wait_count=2, target_duration="1s")
    with Client(cluster) as client:
        time.sleep(1.0)  # a few adaptive intervals with nothing to do: no job may start
        assert jobs() == [] and not client.scheduler_info()["workers"]
        exp = daskhpo.build_experiment("slurm-adapt", SPACE, seed=0)
        with JobCounter() as counter:
            begin = time.time()
            exp.workon(gpu_trial, max_trials=8, client=client, n_workers=2, resources=cluster.trial_resources,
                       worker_timeout=60, delay=1.5)
            end = time.time()
            shrink = wait_for_no_jobs(timeout=60)
        ds = exp.history
        assert set(ds["status"].values) == {"completed"} and ds.sizes["trial"] == 8
        first_start = min(float(t) / 1e9 for t in ds["started"].values.astype("int64"))
        peak = max(n for _, n in counter.samples)
        first_job = min(t for t, n in counter.samples if n > 0)
        print(f"\nadaptive: first job queued {first_job - begin:.1f} s and first trial started "
              f"{first_start - begin:.1f} s after workon, "
              f"peak {peak} jobs, 0 jobs {shrink:.1f} s after the search ({end - begin:.1f} s)")
        assert peak == 2, counter.samples  # queued trials made it grow to its maximum
        assert [n for t, n in counter.samples if t < begin] in ([], [0])
        assert len(set(ds["job"].values)) >= 2
        deadline = time.time() + 10
        while client.scheduler_info()["workers"] and time.time() < deadline:
            time.sleep(0.1)
        assert not client.scheduler_info()["workers"]


def marked_trial(x: float, marker_dir: str, delay: float) -> dict:
    job = os.environ["SLURM_JOB_ID"]
    with open(os.path.join(marker_dir, f"{job}_{x!r}"), "w"):
        pass
    time.sleep(delay)
    return {"objective": x, "job": float(job)}


def test_cancelled_job_costs_only_its_trial_which_is_retried(slurm_cluster, tmp_path):
    """``scancel`` sends SIGTERM, then SIGKILL ``KillWait`` (5 s here) later: the worker uses
    that time (its trials that report hand over, tests/integrations/test_slurm_lifecycle.py),
    so the trials here, which do not report, outlast it (7 s)."""
    cluster = slurm_cluster(gpus_per_job=1)
    cluster.scale(jobs=2)
    markers = tmp_path / "markers"
    markers.mkdir()
    with Client(cluster) as client, ThreadPoolExecutor(1) as pool:
        client.wait_for_workers(2, timeout=60)
        exp = daskhpo.build_experiment("slurm-scancel", SPACE, seed=0)
        search = pool.submit(exp.workon, marked_trial, max_trials=4, client=client, n_workers=2,
                             resources=cluster.trial_resources, marker_dir=str(markers), delay=7.0)
        deadline = time.time() + 60
        while not any(markers.iterdir()):
            assert time.time() < deadline and not search.done(), "no trial started"
            time.sleep(0.05)
        time.sleep(0.5)  # mid-trial
        job, x = sorted(markers.iterdir())[0].name.split("_", 1)
        subprocess.run(["scancel", job], check=True, timeout=30)
        search.result(timeout=120)
    assert job not in jobs()
    ds = exp.history
    assert ds.sizes["trial"] == 4 and set(ds["status"].values) == {"completed"}
    victim = ds["x"].values == float(x)
    assert victim.sum() == 1
    assert ds["attempts"].values[victim].tolist() == [2]
    assert set(ds["attempts"].values[~victim].tolist()) == {1}
    assert ds["job"].values[victim][0] != float(job)  # re-run on the job that was left


def test_nested_joblib_example_on_slurm(slurm, tmp_path):
    storage = tmp_path / "svc.nc"
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sklearn_svc_joblib.py"), "--slurm", "--jobs", "2",
         "--trials", "4", "--interface", "lo", "--log-directory", str(tmp_path / "logs"),
         "--storage", str(storage)],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    ds = daskhpo.load_experiment(storage).history
    assert ds.sizes["trial"] == 4 and set(ds["status"].values) == {"completed"}
    assert float(ds["objective"].min()) < 0.35  # better than guessing (0.5): the folds really ran
    assert all(w.startswith("tcp://127.0.0.1:") for w in ds["worker"].values)
    wait_for_no_jobs(timeout=30)


def test_slurm_gpu_example_runs(slurm, tmp_path):
    storage = tmp_path / "gpu.nc"
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "slurm_gpu.py"), "--trials", "4", "--max-jobs", "2",
         "--cores", "1", "--memory", "1GB", "--walltime", "00:10:00", "--interface", "lo",
         "--log-directory", str(tmp_path / "logs"), "--storage", str(storage), "--seconds", "0.5",
         "--worker-timeout", "60"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "#SBATCH --gres=gpu:1" in done.stderr  # the job script it logged
    ds = daskhpo.load_experiment(storage).history
    assert ds.sizes["trial"] == 4 and set(ds["status"].values) == {"completed"}
    assert set(ds["gpu"].values) <= {"0", "1"}
    wait_for_no_jobs(timeout=30)
