import json
import math
import os
import time

import numpy as np
import pytest
import xarray as xr

from daskhpo.records import TrialRecord
from daskhpo.space import Space
from daskhpo.store.history import History, load_history
from daskhpo.store.journal import journal_header, read_journal

SPACE = Space(
    {
        "lr": "loguniform(1e-5, 1)",
        "units": "randint(1, 64)",
        "kernel": "choices(['rbf', 'linear'])",
        "weight": "choices([None, 'balanced'])",
        "shrink": "choices([True, False])",
    }
)
ATTRS = {"name": "h", "space": json.dumps(SPACE.to_dict()), "seed": 0}


def record(i: int, status: str = "completed") -> TrialRecord:
    params = SPACE.sample(np.random.default_rng(i))
    now = time.time()
    return TrialRecord(**{
        "trial": i,
        "params": params,
        "status": status,
        "objective": float(i) if status == "completed" else math.nan,
        "metrics": {"accuracy": 0.5 + i / 100} if i % 2 else {},
        "submitted": now,
        "started": now + 0.1 if status == "completed" else None,
        "ended": now + 0.3,
        "worker": "tcp://127.0.0.1:1" if status == "completed" else None,
        "gpu": "0",
        "attempts": 1,
        "error": None if status == "completed" else "boom",
    })


def test_dataset_layout_and_dtypes():
    history = History(SPACE, ATTRS)
    for i in range(5):
        history.append(record(i, "broken" if i == 3 else "completed"))
    ds = history.to_dataset()
    assert list(ds["trial"].values) == [0, 1, 2, 3, 4]
    assert ds["lr"].dtype == np.float64 and ds["units"].dtype == np.int64
    assert ds["shrink"].dtype == bool
    assert ds["submitted"].dtype.kind == "M"
    assert ds["duration"].values[0] == ds["duration"].values[0]  # finite
    assert math.isnan(ds["duration"].values[3])
    assert math.isnan(ds["accuracy"].values[0]) and ds["accuracy"].values[1] == 0.51
    assert list(ds["status"].values) == ["completed"] * 3 + ["broken", "completed"]
    assert ds.attrs["name"] == "h"
    assert ds["lr"].attrs["prior"] == str(SPACE["lr"])


def test_storage_round_trip(tmp_path):
    path = tmp_path / "h.nc"
    history = History(SPACE, ATTRS, path)
    originals = [record(i, "broken" if i == 2 else "completed") for i in range(6)]
    for r in originals:
        history.append(r)
    history.close()
    assert xr.open_dataset(path, engine="h5netcdf").sizes["trial"] == 6  # plain xarray reads it
    loaded_history = load_history(path)
    space, attrs, records = loaded_history.space, loaded_history.attrs, loaded_history.records
    assert space == SPACE and attrs["name"] == "h"
    for original, loaded in zip(originals, records):
        assert loaded.params == original.params
        assert type(loaded.params["units"]) is int and type(loaded.params["shrink"]) is bool
        assert loaded.status == original.status
        assert loaded.metrics == original.metrics
        assert loaded.worker == original.worker and loaded.error == original.error
        for key in ("submitted", "started", "ended"):
            if getattr(original, key) is None:
                assert getattr(loaded, key) is None
            else:
                assert getattr(loaded, key) == pytest.approx(getattr(original, key), abs=1e-6)


def test_completed_trials_survive_a_crash_before_any_snapshot(tmp_path):
    path = tmp_path / "h.nc"
    history = History(SPACE, ATTRS, path, snapshot_interval=1e9)
    for i in range(4):
        history.append(record(i))
    # No close(): the process "dies" here. The snapshot holds nothing, the journal everything.
    assert xr.load_dataset(path, engine="h5netcdf").sizes["trial"] == 0
    records = load_history(path).records
    assert [r.trial for r in records] == [0, 1, 2, 3]


def test_torn_last_journal_line_is_ignored(tmp_path):
    path = tmp_path / "h.nc"
    history = History(SPACE, ATTRS, path, snapshot_interval=1e9)
    history.append(record(0))
    history.append(record(1))
    with open(f"{path}.journal", "a") as fh:
        fh.write('{"event": "trial", "trial": 2, "par')  # the crash hit mid-write
    records = load_history(path).records
    assert [r.trial for r in records] == [0, 1]


def test_trial_in_snapshot_and_journal_is_taken_once(tmp_path):
    path = tmp_path / "h.nc"
    history = History(SPACE, ATTRS, path, snapshot_interval=1e9)
    history.append(record(0))
    journal = open(f"{path}.journal").read()
    history.snapshot()
    with open(f"{path}.journal", "w") as fh:  # a crash between replace and truncation
        fh.write(journal)
    records = load_history(path).records
    assert [r.trial for r in records] == [0]


def test_periodic_snapshot_and_no_temporary_files_left(tmp_path):
    path = tmp_path / "h.nc"
    history = History(SPACE, ATTRS, path, snapshot_interval=0.0)
    for i in range(3):
        history.append(record(i))
    assert xr.load_dataset(path, engine="h5netcdf").sizes["trial"] == 3
    assert read_journal(path) == []  # emptied: only its header is left
    assert journal_header(path)["space"] == ATTRS["space"]
    assert sorted(os.listdir(tmp_path)) == ["h.nc", "h.nc.journal"]


# -- files written by an earlier version ------------------------------------------------------------

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")


def _copy_v0(tmp_path, name):
    import shutil

    for suffix in ("", ".journal"):
        if os.path.exists(os.path.join(DATA, name + suffix)):
            shutil.copy(os.path.join(DATA, name + suffix), tmp_path / (name + suffix))
    return tmp_path / name


def test_a_constrained_history_of_the_previous_version_loads_and_resumes(tmp_path):
    """Written by tests/data/make_v0_histories.py with the code before the typed result: the
    snapshot's constraint_<i>/feasible variables and a journal line come back as typed fields."""
    import daskhpo
    from daskhpo.engine import FakeExecutor

    path = _copy_v0(tmp_path, "constrained_v0.nc")
    exp = daskhpo.load_experiment(path)
    records = exp.records()
    assert [r.trial for r in records] == [0, 1, 2, 3, 4] and exp.direction == "maximize"
    for r in records[:4]:
        x, y = r.params["x"], r.params["y"]
        assert r.objective == pytest.approx(x + y) and r.metrics == {"aux": pytest.approx(x * y)}
        assert r.constraints == (pytest.approx(x - 0.5), pytest.approx(y - 1.0))
        assert r.feasible == (x <= 0.5 and y <= 1.0) and [q.step for q in exp.reports(r.trial)] == [1.0]
    assert records[4].constraints == (0.5, -1.0) and not records[4].feasible  # from the journal
    assert [t.objective for t in exp.trials if records[t.id].feasible] == \
        [-r.objective for r in records if r.feasible]
    again = daskhpo.build_experiment("old", {"x": "uniform(-2, 2)", "y": "uniform(-2, 2)"}, storage=path)
    again.run(FakeExecutor(lambda x, y: {"objective": x, "constraints": [x]}, slots=1), max_trials=7)
    again.close()
    ds = daskhpo.load_experiment(path).history
    assert ds.sizes["trial"] == 7 and ds["feasible"].dtype == bool
    np.testing.assert_array_equal(np.isnan(ds["constraint_1"].values), [False] * 5 + [True] * 2)
    assert set(ds.data_vars) >= {"aux", "constraint_0", "constraint_1", "reported_objective"}


def test_a_multi_objective_history_of_the_previous_version_loads_and_resumes(tmp_path):
    import daskhpo
    from daskhpo.engine import FakeExecutor

    path = _copy_v0(tmp_path, "objectives_v0.nc")
    exp = daskhpo.load_experiment(path)
    assert exp.objectives == {"error": "minimize", "speed": "maximize"}
    for r in exp.records():
        x, y = r.params["x"], r.params["y"]
        assert r.values == (pytest.approx(x**2), pytest.approx(-y)) and math.isnan(r.objective)
        assert r.metrics == {"memory": 3.0} and r.constraints == (pytest.approx(x - 1.0),)
    assert {f["trial"] for f in exp.pareto_front} <= {r.trial for r in exp.records() if r.feasible}
    again = daskhpo.build_experiment("oldmo", {"x": "uniform(-2, 2)", "y": "uniform(-2, 2)"}, storage=path)
    again.run(FakeExecutor(lambda x, y: {"error": x, "speed": y}, slots=1), max_trials=6)
    again.close()
    records = daskhpo.load_experiment(path).records()
    assert len(records) == 6 and records[5].values == (records[5].params["x"], records[5].params["y"])


def test_preemptions_round_trip_through_the_journal_and_the_snapshot(tmp_path):
    # trial 1 was preempted twice (the second time before it reported anything), trial 0 never
    t = time.time()
    handed_over = ((t, 4.0), (t + 60.0, math.nan))
    originals = [record(0), record(1).replace(attempts=3, preempted=handed_over)]
    for snapshot_interval in (0.0, 1e9):  # from the snapshot; from the journal alone (a crash)
        path = tmp_path / f"h{snapshot_interval:g}.nc"
        history = History(SPACE, ATTRS, path, snapshot_interval=snapshot_interval)
        for r in originals:
            history.append(r)
        if snapshot_interval == 0.0:
            history.close()
            ds = xr.load_dataset(path, engine="h5netcdf")
            assert list(ds["preempted"].values) == [0, 2] and ds["preempted_time"].dims == ("trial", "preemption")
            assert ds["preempted_step"].values[1, 0] == 4.0 and "preempted" not in load_history(path).records[0].metrics
        loaded = load_history(path).records
        assert loaded[0].preempted == () and loaded[1].attempts == 3
        (t0, s0), (t1, s1) = loaded[1].preempted
        assert t0 == pytest.approx(t, abs=1e-6) and s0 == 4.0 and t1 == pytest.approx(t + 60.0, abs=1e-6)
        assert math.isnan(s1)


def test_a_history_without_preemptions_has_no_preemption_variables():
    history = History(SPACE, ATTRS)
    history.append(record(0))
    ds = history.to_dataset()
    assert "preempted" not in ds and "preempted_time" not in ds and "preemption" not in ds.dims
