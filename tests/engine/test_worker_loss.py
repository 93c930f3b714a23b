"""Workers leaving mid-search, as Slurm jobs do (scancel, preemption, walltime).

When a worker leaves with a trial running, the Dask scheduler runs that task again
elsewhere without telling the client.  The engine counts those re-runs as attempts
(bounded by ``retries``) from the trials' own start events.  tests/integrations/test_slurm.py does the
same with ``scancel`` on a real Slurm job.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from distributed import Client, LocalCluster

import daskhpo


def kills_its_worker_once(x: float, marker_dir: str) -> float:
    marker = os.path.join(marker_dir, "died")
    if x > 0.5 and not os.path.exists(marker):
        open(marker, "w").close()
        time.sleep(0.3)
        os._exit(1)  # the worker process dies mid-trial; its nanny starts a new one
    time.sleep(0.1)
    return x


def first_trial_always_kills_its_worker(x: float, marker_dir: str) -> float:
    marker = os.path.join(marker_dir, "victim")
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(repr(x))
    with open(marker) as f:
        if f.read() == repr(x):
            time.sleep(0.3)
            os._exit(1)
    time.sleep(0.1)
    return x


@pytest.fixture
def nanny_client():
    # Default scheduler settings: a task whose worker died is re-run by the scheduler.
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster, Client(
        cluster, set_as_default=False
    ) as client:
        yield client


def test_trial_rerun_by_the_scheduler_counts_as_a_second_attempt(nanny_client, tmp_path):
    exp = daskhpo.build_experiment("rerun", {"x": "uniform(0, 1)"}, seed=0)
    exp.workon(kills_its_worker_once, max_trials=6, client=nanny_client, n_workers=2, marker_dir=str(tmp_path))
    ds = exp.history
    assert ds.sizes["trial"] == 6 and set(ds["status"].values) == {"completed"}
    victim = ds["attempts"].values == 2
    assert victim.sum() == 1 and ds["x"].values[victim][0] > 0.5
    assert set(ds["attempts"].values[~victim].tolist()) == {1}


def test_reruns_beyond_retries_record_the_trial_as_lost(nanny_client, tmp_path):
    exp = daskhpo.build_experiment("rerun-lost", {"x": "uniform(0, 1)"}, seed=0)
    exp.workon(first_trial_always_kills_its_worker, max_trials=3, client=nanny_client, n_workers=1, retries=1,
               marker_dir=str(tmp_path))
    ds = exp.history
    assert ds["status"].values.tolist() == ["lost", "completed", "completed", "completed"]
    assert ds["attempts"].values.tolist() == [2, 1, 1, 1]  # gave up at the 3rd run (retries=1)
    assert "its worker left mid-trial in each of 2 attempts (retries=1)" in str(ds["error"].values[0])


def test_all_workers_leaving_mid_search_fails_after_worker_timeout():
    def slow(x):
        time.sleep(0.5)
        return x

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, Client(
        cluster, set_as_default=False
    ) as client, ThreadPoolExecutor(1) as pool:
        exp = daskhpo.build_experiment("orphaned", {"x": "uniform(0, 1)"}, seed=0)
        search = pool.submit(exp.workon, slow, max_trials=50, client=client, n_workers=1, worker_timeout=2)
        while len(exp.history["trial"]) < 1:
            time.sleep(0.05)
        cluster.scale(0)  # every job ended, none comes back
        gone = time.time()
        with pytest.raises(daskhpo.NoWorkersError, match="within 2 s"):
            search.result(timeout=30)
        assert 1.5 <= time.time() - gone < 10
