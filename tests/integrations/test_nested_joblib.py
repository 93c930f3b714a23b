"""examples/sklearn_svc_joblib.py: cross-validation folds as tasks on the trials' cluster."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from distributed import Client, LocalCluster, get_task_stream

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.timeout(120)
def test_nested_joblib_does_not_deadlock_with_every_thread_holding_a_trial(monkeypatch):
    # The worker processes inherit sys.path, so they import the example's objective too.
    monkeypatch.syspath_prepend(str(EXAMPLES))
    example = importlib.import_module("sklearn_svc_joblib")
    # 2 workers of 1 thread, 2 trials in flight: every thread holds a trial whose folds
    # need a thread too.  joblib's Dask backend secedes the waiting trial, so they get one.
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster, Client(
        cluster, set_as_default=False
    ) as client:
        with get_task_stream(client) as stream:
            exp = example.run(client, trials=4, n_workers=2)
    ds = exp.history
    assert ds.sizes["trial"] == 4 and set(ds["status"].values) == {"completed"}
    assert len(set(ds["worker"].values)) == 2  # both threads held a trial
    assert float(ds["objective"].min()) < 0.35  # better than guessing (0.5)
    trials = [t for t in stream.data if str(t["key"]).startswith("daskhpo-trial-")]
    folds = [t for t in stream.data if "fit_and_score" in str(t["key"])]
    assert len(trials) == 4 and folds  # the folds were Dask tasks ...
    assert len({t["worker"] for t in folds}) == 2  # ... on both workers
