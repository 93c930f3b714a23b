"""The MLflow callback (daskhpo/integrations/mlflow_callback.py), read back from a real sqlite store."""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
import time

import pytest

import daskhpo

if os.environ.get("CI", "").lower() == "true":
    import mlflow  # a test dependency (pyproject's `test` extra): in CI it runs, never skips
else:
    mlflow = pytest.importorskip("mlflow")
MlflowClient = mlflow.MlflowClient

from daskhpo.integrations.mlflow_callback import RUN_STATUS, MLflow, mlflow_key  # noqa: E402

SPACE = {"lr": "loguniform(0.01, 1)", "kind": "choices(['good', 'bad', 'grün ☃'])"}


def train(lr, kind):
    if kind == "bad":
        raise RuntimeError("diverged")
    curve = [lr / epoch for epoch in (1, 2, 3)]
    for epoch, loss in enumerate(curve, 1):
        daskhpo.report(epoch, objective=loss, accuracy=1 - loss)
    return {"objective": curve[-1] / 2, "accuracy": 1 - curve[-1]}  # the final value is not the last report


def runs_of(uri, name):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None, f"no MLflow experiment {name!r}"
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def test_one_parent_a_nested_run_per_trial_and_a_resumed_search_logs_into_it(client, tmp_path):
    uri, storage = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "exp.nc"
    experiment = daskhpo.build_experiment("search ü", SPACE, storage=storage, seed=0)
    experiment.enqueue({"lr": 0.5, "kind": "grün ☃"})  # unicode in a param's value
    experiment.workon(train, max_trials=4, client=client, max_broken=None, progress=False, callbacks=[MLflow(uri)])

    mlclient, parents, children = runs_of(uri, "search ü")  # experiment_name=None: the daskhpo name
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.run_name == "search ü" and parent.info.status == "FINISHED"
    assert parent.data.tags["daskhpo.storage"] == str(storage.resolve())
    records = {r.trial: r for r in experiment.records()}
    assert sorted(int(c.data.tags["daskhpo.trial"]) for c in children) == sorted(records)
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    for child in children:
        record = records[int(child.data.tags["daskhpo.trial"])]
        assert child.info.run_name == f"trial {record.trial}"
        assert child.data.params == {"lr": str(record.params["lr"]), "kind": record.params["kind"]}
        assert child.data.tags["daskhpo.status"] == record.status
        assert child.info.status == RUN_STATUS[record.status]
        assert child.data.tags["daskhpo.worker"] == record.worker
        assert child.data.tags["daskhpo.attempts"] == str(record.attempts)
        if record.status == "completed":
            # the metric's history is the learning curve, then the final value: its latest
            history = mlclient.get_metric_history(child.info.run_id, "objective")
            assert [m.step for m in history] == [1, 2, 3, 3]
            assert [m.value for m in history[:3]] == pytest.approx([r.values["objective"] for r in
                                                                   experiment.reports(record.trial)])
            assert child.data.metrics["objective"] == pytest.approx(record.objective)
            assert child.data.metrics["accuracy"] == pytest.approx(record.metrics["accuracy"])
        else:
            assert child.info.status == "FAILED" and "diverged" in child.data.tags["daskhpo.error"]
            assert "objective" not in child.data.metrics
    statuses = {r.status for r in records.values()}
    assert {"completed", "broken"} <= statuses
    assert "grün ☃" in {c.data.params["kind"] for c in children}

    # resumed from the file, with a new callback: the same parent, the new trials under it
    resumed = daskhpo.load_experiment(storage)
    resumed.workon(train, max_trials=7, client=client, max_broken=None, progress=False, callbacks=[MLflow(uri)])
    _, parents, children = runs_of(uri, "search ü")
    assert [p.info.run_id for p in parents] == [parent.info.run_id]
    assert parents[0].info.status == "FINISHED"
    assert sorted(int(c.data.tags["daskhpo.trial"]) for c in children) == sorted(r.trial for r in resumed.records())
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}

    # a new experiment of the same name and file is another parent, in the experiment named
    storage.unlink()
    fresh = daskhpo.build_experiment("search ü", SPACE, storage=storage, seed=1)
    fresh.workon(train, max_trials=1, client=client, max_broken=None, progress=False,
                 callbacks=[MLflow(uri, experiment_name="elsewhere")])
    _, parents, children = runs_of(uri, "elsewhere")
    assert len(parents) == 1 and parents[0].info.run_id != parent.info.run_id and len(children) == 1


def test_pruned_unicode_odd_keys_long_values_and_several_objectives(tmp_path):
    """The record as workon gives it, through the callback protocol (setup, call, close)."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    experiment = daskhpo.build_experiment("multi", {"x": "uniform(0, 1)"}, objectives={"loss": "minimize",
                                                                                         "size": "maximize"})
    callback = MLflow(uri)
    callback.setup(experiment)
    base = {"metrics": {}, "constraints": (), "values": (), "worker": "tcp://w:1", "attempts": 1, "error": None,
            "started": 1000.0, "ended": 1002.5, "submitted": 999.0}
    callback({**base, "trial": 0, "status": "pruned", "objective": 0.25, "params": {"x": 0.5},
              "reports": [(1, {"loss": 0.5}), (2.7, {"loss": 0.25})]})
    callback({**base, "trial": 1, "status": "completed", "objective": math.nan, "values": (0.1, 7.0),
              "constraints": (-1.0,), "reports": [],
              "params": {"x": 0.1, "naïve ☃": "日本語", "a(b)": 1, "../up": 2, "long": "y" * 7000, "off": None}})
    callback.close()

    mlclient, parents, children = runs_of(uri, "multi")
    assert len(parents) == 1 and len(children) == 2
    pruned, done = sorted(children, key=lambda c: int(c.data.tags["daskhpo.trial"]))
    assert pruned.info.status == "KILLED" and pruned.data.tags["daskhpo.status"] == "pruned"
    assert [(m.step, m.value) for m in mlclient.get_metric_history(pruned.info.run_id, "loss")] == [(1, 0.5), (2, 0.25)]
    assert pruned.data.metrics["objective"] == 0.25  # the last reported value, logged as its final one
    assert (pruned.info.start_time, pruned.info.end_time) == (1_000_000, 1_002_500)
    assert done.info.status == "FINISHED"
    assert done.data.metrics == {"loss": 0.1, "size": 7.0, "constraint_0": -1.0}  # no NaN "objective"
    assert done.data.params == {"x": "0.1", "naïve _": "日本語", "a_b_": "1", "_.._up": "2", "long": "y" * 6000}
    assert mlflow_key("/x") == "_x" and mlflow_key(".") == "_." and mlflow_key("..") == "_.." and mlflow_key("k" * 300) == "k" * 250


def test_an_mlflow_failure_is_one_warning_and_never_stops_the_search(tmp_path, caplog):
    experiment = daskhpo.build_experiment("down", {"x": "uniform(0, 1)"})
    (tmp_path / "a-file").write_text("")
    callback = MLflow(f"sqlite:///{tmp_path}/a-file/mlflow.db")  # a database MLflow cannot create
    with caplog.at_level(logging.WARNING, logger="daskhpo"):
        callback.setup(experiment)
        for trial in range(5):
            callback({"trial": trial, "status": "completed", "objective": 1.0, "params": {"x": 0.5}, "reports": []})
        callback.close()
    assert callback.parent_run_id is None and callback.failed == 5
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("daskhpo") and r.levelno == logging.WARNING]
    assert len(warnings) == 3, warnings  # the first error, giving up, and the count at close
    assert "starting the parent run failed" in warnings[0] and "search goes on" in warnings[0]
    assert "no more trials are logged" in warnings[1] and "5 trial(s) were not logged" in warnings[2]


def test_close_gives_up_on_a_tracking_server_that_does_not_answer(monkeypatch, caplog):
    # a real socket that accepts connections (the kernel's backlog) and never answers
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the thread left behind ends soon after
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        callback = MLflow(f"http://127.0.0.1:{server.getsockname()[1]}", timeout=0.5)
        callback.setup(daskhpo.build_experiment("silent", {"x": "uniform(0, 1)"}))
        callback({"trial": 0, "status": "completed", "objective": 1.0, "params": {"x": 0.5}, "reports": []})
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="daskhpo"):
            callback.close()
        assert time.monotonic() - started < 10  # not MLflow's minutes of retries
    assert callback.failed == 1  # the trial queued behind the parent's start
    assert "no answer from http://127.0.0.1" in caplog.text and "1 queued trial(s) not logged" in caplog.text


def test_the_import_error_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what `import mlflow` does when it is not installed
    with pytest.raises(ImportError, match="pip install mlflow"):
        MLflow()


def test_arguments_are_checked_and_it_is_served_as_daskhpo_callbacks():
    assert daskhpo.callbacks.MLflow is MLflow
    with pytest.raises(TypeError, match="tracking_uri"):
        MLflow(tracking_uri=3)
    with pytest.raises(ValueError, match="experiment_name"):
        MLflow(experiment_name="")
    with pytest.raises(ValueError, match="timeout"):
        MLflow(timeout=0)
    with pytest.raises(RuntimeError, match="setup"):
        MLflow()({"trial": 0, "status": "completed", "params": {}})
