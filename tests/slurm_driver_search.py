"""A search script as a user writes it, run unchanged in Slurm driver jobs by tests/test_driver.py.

``python slurm_driver_search.py STORAGE N DELAY LOG_DIRECTORY``: N trials of DELAY seconds on
GPU worker jobs (1 core, 1 fake GPU, 1 GB each; their Dask workers give up 5 s after losing
the scheduler, so a killed driver leaves no job behind for long).
"""

from __future__ import annotations

import os
import sys
import time

from distributed import Client

import daskhpo


def trial(x: float, delay: float) -> dict:
    time.sleep(delay)
    return {"objective": x**2, "worker_job": float(os.environ["SLURM_JOB_ID"]),
            "driver_job": float(os.environ["DASKHPO_TEST_DRIVER_JOB"])}


if __name__ == "__main__":
    storage, n, delay, logs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    # The worker jobs inherit this environment: each trial can tell which driver ran it.
    os.environ["DASKHPO_TEST_DRIVER_JOB"] = os.environ["SLURM_JOB_ID"]
    cluster = daskhpo.SlurmGPUCluster(
        gpus_per_job=1, cores=1, processes=1, memory="1GB", walltime="00:10:00", interface="lo",
        log_directory=logs, death_timeout=float(os.environ.get("DEATH_TIMEOUT", 5)), scheduler_options={"dashboard_address": ":0"},
    )
    cluster.scale(jobs=1)
    with Client(cluster) as client:
        experiment = daskhpo.build_experiment("driver-chain", {"x": "uniform(-1, 1)"}, storage=storage, seed=0)
        experiment.workon(trial, max_trials=n, client=client, n_workers=2, resources=cluster.trial_resources,
                          worker_timeout=120, delay=delay)
        print("best:", experiment.best, flush=True)
    cluster.close()
