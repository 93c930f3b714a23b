"""daskhpo.SlurmGPUCluster's settings, and GPU-annotated trials on a local cluster.

Building a SLURMCluster starts its scheduler but submits nothing, so the job scripts can be
checked without Slurm; tests/integrations/test_slurm.py runs them on a real one.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from distributed import Client, Nanny, Scheduler, SpecCluster, rejoin, secede

import daskhpo
from daskhpo import SlurmGPUCluster

SPACE = {"x": "uniform(-1, 1)"}
QUIET = {"scheduler_options": {"dashboard_address": ":0"}, "cores": 1, "memory": "1GB"}


def script_of(**kwargs) -> tuple[str, dict | None]:
    with SlurmGPUCluster(**QUIET, **kwargs) as cluster:
        return cluster.job_script(), cluster.trial_resources


def test_one_number_sets_the_gres_the_worker_resource_and_the_trial_annotation():
    script, trial = script_of(gpus_per_job=2, gpus_per_trial=1, job_extra_directives=["--qos=short"])
    assert "#SBATCH --gres=gpu:2\n" in script and "#SBATCH --qos=short\n" in script
    assert "--resources GPU=2" in script and trial == {"GPU": 1}
    script, trial = script_of(gpus_per_job=4, processes=2, gpu_type="a100", gpus_per_trial=2)
    assert "#SBATCH --gres=gpu:a100:4\n" in script and "--resources GPU=2" in script and "--nworkers 2" in script
    assert trial == {"GPU": 2}


def test_zero_gpus_is_a_plain_slurm_cluster():
    script, trial = script_of(gpus_per_job=0)
    assert "--gres" not in script and "--resources" not in script and trial is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"gpus_per_job": 1, "gpus_per_trial": 2}, "no trial could ever run"),
        ({"gpus_per_job": 3, "processes": 2}, "cannot be shared evenly"),
        ({"gpus_per_job": -1}, "gpus_per_job must be an integer >= 0"),
        ({"job_extra_directives": ["--gres=gpu:1"]}, "already request GPUs"),
        ({"job_extra_directives": ["--gpus=2"]}, "already request GPUs"),
        ({"worker_extra_args": ["--resources", "GPU=1"]}, "already declare --resources"),
    ],
)
def test_contradicting_gpu_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SlurmGPUCluster(**QUIET, **kwargs)


def test_the_job_script_signals_ahead_of_the_time_limit_and_execs_the_worker():
    script, _ = script_of(walltime="01:00:00", job_script_prologue=["module load cuda"])
    lines = script.splitlines()
    assert "#SBATCH --signal=B:USR1@120" in lines
    # ignored until the worker handles it; the batch shell becomes the nanny, which receives it
    trap, prologue, command = lines.index("trap '' USR1"), lines.index("module load cuda"), lines[-1]
    assert trap < prologue < len(lines) - 1 and command.startswith("exec ") and "distributed.cli.dask_worker" in command
    script, _ = script_of(preempt_signal="USR2", warning_seconds=600)
    assert "#SBATCH --signal=B:USR2@600\n" in script and "trap '' USR2\n" in script
    script, _ = script_of(preempt_signal=None)
    assert "--signal" not in script and "trap" not in script and script.splitlines()[-1].startswith("exec ")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"preempt_signal": "KILL"}, "preempt_signal must be one of"),
        ({"preempt_signal": "USR1; rm -rf /"}, "preempt_signal must be one of"),
        ({"warning_seconds": 0}, "warning_seconds must be an integer from 1 to 65535"),
        ({"warning_seconds": 70000}, "warning_seconds must be an integer from 1 to 65535"),
        ({"warning_seconds": "60"}, "warning_seconds must be an integer"),
        ({"warning_seconds": True}, "warning_seconds must be an integer"),
        ({"job_extra_directives": ["--signal=USR1@60"]}, "already set"),
    ],
)
def test_bad_preemption_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SlurmGPUCluster(**QUIET, **kwargs)


def test_own_signal_directive_kept_without_preempt_signal():
    script, _ = script_of(preempt_signal=None, job_extra_directives=["--signal=B:USR2@300"])
    assert "#SBATCH --signal=B:USR2@300\n" in script and "trap" not in script


def waits_like_nested_joblib(x: float) -> float:
    """Leaves the worker's thread pool while it waits, as joblib's Dask backend does."""
    secede()
    time.sleep(0.3)
    rejoin()
    return x


def test_gpu_trials_run_only_where_the_gpu_is_and_hold_it_while_they_wait():
    # Two worker processes: 2 threads without GPU, and 2 threads sharing 1 "GPU" whose
    # CUDA_VISIBLE_DEVICES is 3 (as Slurm would set it for the job).
    workers = {
        "cpu": {"cls": Nanny, "options": {"nthreads": 2}},
        "gpu": {"cls": Nanny, "options": {"nthreads": 2, "resources": {"GPU": 1},
                                          "env": {"CUDA_VISIBLE_DEVICES": "3"}}},
    }
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": ":0"}}
    with SpecCluster(workers=workers, scheduler=scheduler) as cluster, Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)
        gpu_worker = [a for a, w in client.scheduler_info()["workers"].items() if w["resources"]]
        exp = daskhpo.build_experiment("gpu-hold", SPACE, seed=0)
        exp.workon(waits_like_nested_joblib, max_trials=5, client=client, n_workers=3, resources={"GPU": 1})
    ds = exp.history
    assert set(ds["status"].values) == {"completed"}
    assert list(set(ds["worker"].values)) == gpu_worker  # never on the CPU worker's free threads
    assert set(ds["gpu"].values) == {"3"}
    # A seceded trial keeps its GPU: the second thread of the GPU worker never ran another.
    intervals = sorted(zip(ds["started"].values, ds["ended"].values))
    assert all(end <= next_start for (_, end), (next_start, _) in zip(intervals, intervals[1:]))


def test_ctrl_c_still_raises_keyboard_interrupt_with_the_slurm_helper():
    # dask_jobqueue's import installs a SIGINT handler calling sys.exit() (exit status 0).
    code = (
        "import signal, sys, daskhpo\n"
        "assert 'dask_jobqueue' not in sys.modules\n"
        "import dask_jobqueue\n"
        "assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler\n"
        "daskhpo.SlurmGPUCluster\n"
        "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
