"""A search script as a user writes it, run unchanged in Slurm driver jobs by tests/integrations/test_driver.py.

``python slurm_driver_search.py STORAGE N DELAYS LOG_DIRECTORY``: N trials on GPU worker jobs
(1 core, 1 fake GPU, 1 GB each; their Dask workers give up 5 s after failing to reach the
scheduler).  DELAYS is a comma-separated list of trial seconds, one per driver job of the
chain (the last one for the rest): slow first drivers leave the test time to signal or kill
them mid-search even on a loaded machine.
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
    storage, n, delays, logs = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","), sys.argv[4]
    restart = int(os.environ.get("DASKHPO_DRIVER_RESTART", 0))  # set by the driver job
    delay = float(delays[min(restart, len(delays) - 1)])
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
