"""Workers leaving mid-search, as Slurm jobs do (scancel, preemption, walltime).

When a worker leaves with a trial running, the Dask scheduler runs that task again
elsewhere without telling the client.  An attempt claims its key on the scheduler before
its objective runs, so that second start is refused (``AttemptLost``) and the engine runs
the trial again as a new attempt, bounded by ``retries``.  The claim is acknowledged before
the objective starts: an objective may kill its worker at once.  tests/integrations/test_slurm.py does the
same with ``scancel`` on a real Slurm job.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from distributed import Client, LocalCluster

import daskhpo


def kills_its_worker_once(x: float, marker_dir: str) -> float:
    marker = os.path.join(marker_dir, "died")
    if x > 0.5 and not os.path.exists(marker):
        open(marker, "w").close()
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
            attempts = os.path.join(marker_dir, "victim-attempts")
            with open(attempts, "a") as f:
                f.write(".")
            os._exit(1)
    time.sleep(0.1)
    return x




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
    assert ds["attempts"].values.tolist() == [2, 1, 1, 1]  # gave up after the 2nd run (retries=1)
    assert "AttemptLost" in str(ds["error"].values[0]) and "(after 2 attempts)" in str(ds["error"].values[0])
    assert (tmp_path / "victim-attempts").read_text() == ".."  # it ran twice, not 3 or 4 times


def test_all_workers_leaving_mid_search_fails_after_worker_timeout():
    def slow(x):
        time.sleep(0.5)
        return x

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, Client(
        cluster, set_as_default=False
    ) as client, ThreadPoolExecutor(1) as pool:
        exp = daskhpo.build_experiment("orphaned", {"x": "uniform(0, 1)"}, seed=0)
        first_recorded = threading.Event()
        exp.subscribe(lambda record: first_recorded.set())
        search = pool.submit(exp.workon, slow, max_trials=50, client=client, n_workers=1, worker_timeout=2)
        assert first_recorded.wait(60), "no trial recorded within 60 s"
        cluster.scale(0)  # every job ended, none comes back
        gone = time.time()
        with pytest.raises(daskhpo.NoWorkersError, match="within 2 s"):
            search.result(timeout=30)
        assert 1.5 <= time.time() - gone < 10
