"""A GPU search on a Slurm cluster, run from the login node.

Every trial is a Slurm job's worth of work on one GPU: daskhpo submits trials to Dask, the
adaptive SLURMCluster submits `sbatch` jobs while trials wait (up to ``--max-jobs``) and
cancels them when the search ends.  Run it on the login node (in tmux/screen: the search
lives as long as this process)::

    python examples/slurm_gpu.py --max-jobs 32 --trials 500 --account myproject --queue gpu

Replace ``train`` with your training function: it receives the hyperparameters as keyword
arguments, sees its GPU in ``CUDA_VISIBLE_DEVICES`` (set by Slurm for the job), and returns
the value to minimise (or a dict with ``"objective"`` and other metrics).  It must be
importable on the compute nodes, or defined in this script (functions of ``__main__`` are
sent by value).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time

from distributed import Client

import daskhpo

SPACE = {
    "lr": "loguniform(1e-5, 1e-1)",
    "weight_decay": "loguniform(1e-6, 1e-2)",
    "dropout": "uniform(0, 0.5)",
    "batch_size": "choices([32, 64, 128, 256])",
}


def train(lr: float, weight_decay: float, dropout: float, batch_size: int, seconds: float = 5.0) -> dict:
    """Stand-in for a training run: replace with yours (e.g. a PyTorch loop on ``cuda:0``)."""
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES")
    if gpu is None:
        raise RuntimeError("no GPU was assigned to this job (CUDA_VISIBLE_DEVICES is unset)")
    time.sleep(seconds)
    loss = (math.log10(lr) + 3) ** 2 + 1e3 * weight_decay + (dropout - 0.2) ** 2 + 64 / batch_size
    return {"objective": loss, "val_accuracy": 1 / (1 + loss)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="daskhpo on Slurm GPUs")
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--max-jobs", type=int, default=8, help="most Slurm jobs (= trials in flight)")
    parser.add_argument("--gpus-per-job", type=int, default=1)
    parser.add_argument("--cores", type=int, default=4, help="cores per job (worker threads)")
    parser.add_argument("--memory", default="16GB", help="memory per job")
    parser.add_argument("--walltime", default="02:00:00")
    parser.add_argument("--queue", default=None, help="Slurm partition")
    parser.add_argument("--account", default=None, help="Slurm account")
    parser.add_argument("--interface", default=None, help="network interface the nodes reach each other on, e.g. ib0")
    parser.add_argument("--log-directory", default="dask-slurm-logs", help="the jobs' stdout/stderr")
    parser.add_argument("--storage", default="slurm-gpu.nc", help="history; rerun to resume")
    parser.add_argument("--worker-timeout", type=float, default=600, help="seconds to wait for a first job to start")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the stand-in training run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)

    # One place for the GPU settings: --gres=gpu:N for Slurm, --resources GPU=N for the
    # Dask worker, and the matching trial annotation, cluster.trial_resources.
    cluster = daskhpo.SlurmGPUCluster(
        gpus_per_job=args.gpus_per_job,
        cores=args.cores,
        memory=args.memory,
        walltime=args.walltime,
        queue=args.queue,
        account=args.account,
        interface=args.interface,
        log_directory=args.log_directory,
    )
    logging.info("each job runs:\n%s", cluster.job_script())
    cluster.adapt(minimum=0, maximum=args.max_jobs)
    with cluster, Client(cluster) as client:
        logging.info("dashboard: %s", client.dashboard_link)
        experiment = daskhpo.build_experiment("slurm-gpu", SPACE, algorithm="random", storage=args.storage)
        experiment.workon(
            train,
            max_trials=args.trials,
            client=client,
            n_workers=args.max_jobs * (args.gpus_per_job // cluster.trial_resources["GPU"]),
            resources=cluster.trial_resources,
            worker_timeout=args.worker_timeout,
            seconds=args.seconds,
        )
        logging.info("best: %s", experiment.best)


if __name__ == "__main__":
    main()
