"""The progress bar and callbacks of ``workon`` (daskhpo/progress.py)."""

from __future__ import annotations

import io
import math

import pytest

import daskhpo
from daskhpo.records import TrialRecord
from daskhpo.viz.progress import ProgressBar


def objective(x):
    if x > 0.8:
        raise ValueError("too large")
    daskhpo.report(1, objective=x + 1)
    return x


def test_bar_counts_finished_broken_and_best():
    out = io.StringIO()
    bar = ProgressBar(10, done=2, n_workers=4, best=0.5, file=out, mininterval=0)
    bar(TrialRecord(0, {}, "completed", 0.25))
    bar(TrialRecord(1, {}, "broken", math.nan))
    bar(TrialRecord(2, {}, "pruned", 0.1))  # pruned: counted, not a best
    assert (bar.finished, bar.broken, bar.best, bar.running) == (4, 1, 0.25, 4)
    bar.close()
    text = out.getvalue()
    assert "4/10" in text and "running=4 broken=1 best=0.25" in text


def test_workon_progress_and_callbacks(client, capsys):
    experiment = daskhpo.build_experiment("progress", {"x": "uniform(0, 1)"}, seed=3)
    seen = []

    class Closing(list):
        closed = False

        def __call__(self, record):
            self.append(record)

        def close(self):
            self.closed = True

    closing = Closing()
    experiment.workon(objective, max_trials=6, client=client, progress=True, max_broken=100,
                      callbacks=[seen.append, closing])
    err = capsys.readouterr().err
    assert "6/6" in err and "best=" in err and "broken=" in err
    assert closing.closed and len(closing) == len(seen) == len(experiment.history["trial"])
    for record in seen:
        assert {"trial", "params", "status", "objective"} <= set(record)
        if record["status"] == "completed":
            assert record["reports"] == [(1.0, {"objective": pytest.approx(record["params"]["x"] + 1)})]
    assert experiment.subscribers == []  # removed after the run

    experiment.workon(objective, max_trials=7, client=client, progress=None, max_broken=100)
    assert "7/7" not in capsys.readouterr().err  # not a terminal: no bar
    with pytest.raises(TypeError, match="callbacks"):
        experiment.workon(objective, max_trials=8, client=client, callbacks=[1])
    with pytest.raises(ValueError, match="progress"):
        experiment.workon(objective, max_trials=8, client=client, progress="yes")


def test_create_experiment_holds_max_trials(client):
    experiment = daskhpo.create_experiment(name="dask", max_trials=3, space={"x": "uniform(0, 1)"},
                                           algorithms={"tpe": {"n_initial": 2}})
    assert experiment.optimizer.name == "tpe"
    experiment.workon(lambda x: x, client=client, progress=False)
    assert int((experiment.history["status"] == "completed").sum()) == 3


def test_an_error_inside_workon_on_the_current_client_propagates(client):
    # _client_for once caught it as "no current client", started a LocalCluster and failed
    # with "generator didn't stop after throw()".
    experiment = daskhpo.build_experiment("errors", {"x": "uniform(0, 1)"}, seed=3)
    with client.as_current(), pytest.raises(ValueError, match="progress must be"):
        experiment.workon(lambda x: x, max_trials=2, progress="yes")


def test_bar_best_follows_direction_and_feasibility():
    out = io.StringIO()
    bar = ProgressBar(5, direction="maximize", file=out, mininterval=0)
    bar(TrialRecord(0, {}, "completed", 0.25))
    bar(TrialRecord(1, {}, "completed", 0.75))
    bar(TrialRecord(2, {}, "completed", 0.5))
    bar(TrialRecord(3, {}, "completed", 9.0, constraints=(0.5,)))  # infeasible: not a best
    assert bar.best == 0.75
    bar.close()
    assert "best=0.75" in out.getvalue()


def test_callbacks_get_the_record_s_typed_fields_and_subscribers_the_record():
    from daskhpo.engine import FakeExecutor

    def constrained(x, y):
        return {"error": x, "speed": y, "aux": 1.0, "constraints": [x - 0.5]}

    exp = daskhpo.build_experiment("cb", {"x": "uniform(0, 1)", "y": "uniform(0, 1)"}, seed=0,
                                   objectives={"error": "minimize", "speed": "maximize"})
    seen, records = [], []
    exp.subscribe(records.append)
    exp.run(FakeExecutor(constrained, slots=2), max_trials=5, callbacks=[seen.append])
    assert [r["trial"] for r in seen] == [r.trial for r in records] and len(seen) == 5
    for data, record in zip(seen, records):
        assert isinstance(record, TrialRecord) and data["metrics"] == record.metrics == {"aux": 1.0}
        x, y = record.params["x"], record.params["y"]
        assert data["values"] == record.values == (x, y) and data["constraints"] == record.constraints == (x - 0.5,)
        assert math.isnan(data["objective"]) and data["reports"] == []


def test_a_callback_s_setup_gets_the_experiment_before_the_first_trial():
    from daskhpo.engine import FakeExecutor

    class Logger:
        def __init__(self):
            self.events = []

        def setup(self, experiment):
            self.events.append(("setup", experiment.name, len(experiment.records())))

        def __call__(self, record):
            self.events.append(("trial", record["trial"]))

    exp = daskhpo.build_experiment("setup", {"x": "uniform(0, 1)"}, seed=0)
    logger = Logger()
    exp.run(FakeExecutor(lambda x: x, slots=2), max_trials=2, callbacks=[logger])
    exp.run(FakeExecutor(lambda x: x, slots=2), max_trials=3, callbacks=[logger])  # once per run, as it resumes
    assert [e[0] for e in logger.events] == ["setup", "trial", "trial", "setup", "trial"]
    assert logger.events[0] == ("setup", "setup", 0) and logger.events[3] == ("setup", "setup", 2)
