"""Experiments end to end: the public API, resume, results, interruption."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import daskhpo
from daskhpo.optimizers import Optimizer, Suggestion

ROOT = Path(__file__).resolve().parents[2]


def rosenbrock(x, y, a=1, b=100):
    return (a - x) ** 2 + b * (y - x**2) ** 2


SPACE = {"x": "uniform(-5, 5)", "y": "uniform(-5, 5)"}


def test_quick_start_api(client, tmp_path):
    exp = daskhpo.build_experiment("random-rosenbrock", SPACE, algorithm="random", storage=tmp_path / "r.nc", seed=0)
    exp.workon(rosenbrock, max_trials=20, client=client)
    ds = exp.history
    assert ds.sizes["trial"] == 20
    best = exp.best
    assert best["objective"] == float(ds["objective"].min())
    assert best["params"] == {"x": float(ds["x"][best["trial"]]), "y": float(ds["y"][best["trial"]])}
    assert best["objective"] == pytest.approx(rosenbrock(**best["params"]))
    assert ds.attrs["algorithm"] == "random" and ds.attrs["seed"] == 0
    assert ds.attrs["daskhpo_version"] == daskhpo.__version__
    assert json.loads(ds.attrs["space"]) == {"x": "uniform(-5.0, 5.0)", "y": "uniform(-5.0, 5.0)"}


def test_resume_counts_stored_trials_and_continues(client, tmp_path):
    path = tmp_path / "resume.nc"
    first = daskhpo.build_experiment("resume", SPACE, storage=path, seed=4)
    first.workon(rosenbrock, max_trials=10, client=client)
    again = daskhpo.build_experiment("resume", SPACE, storage=path)  # seed comes from storage
    assert len(again.trials) == 10
    again.workon(rosenbrock, max_trials=15, client=client)
    ds = daskhpo.load_experiment(path).history
    assert ds.sizes["trial"] == 15 and list(ds["trial"].values) == list(range(15))
    points = {(float(x), float(y)) for x, y in zip(ds["x"].values, ds["y"].values)}
    assert len(points) == 15  # the resumed run did not repeat earlier draws
    again.workon(rosenbrock, max_trials=15, client=client)  # already done: nothing runs
    assert daskhpo.load_experiment(path).history.sizes["trial"] == 15


def test_resumed_run_equals_an_uninterrupted_one(client, tmp_path):
    whole = daskhpo.build_experiment("whole", SPACE, algorithm=("grid", {"n_values": 4}), seed=1)
    whole.workon(rosenbrock, max_trials=12, client=client, n_workers=1)
    path = tmp_path / "split.nc"
    daskhpo.build_experiment("split", SPACE, algorithm=("grid", {"n_values": 4}), storage=path, seed=1).workon(
        rosenbrock, max_trials=5, client=client, n_workers=1)
    resumed = daskhpo.build_experiment("split", SPACE, algorithm=("grid", {"n_values": 4}), storage=path)
    resumed.workon(rosenbrock, max_trials=12, client=client, n_workers=1)
    np.testing.assert_array_equal(whole.history["x"].values, resumed.history["x"].values)
    np.testing.assert_array_equal(whole.history["y"].values, resumed.history["y"].values)


def test_another_space_for_existing_storage_shows_both(client, tmp_path):
    path = tmp_path / "s.nc"
    daskhpo.build_experiment("s", SPACE, storage=path, seed=0).workon(rosenbrock, max_trials=2, client=client)
    with pytest.raises(ValueError) as info:
        daskhpo.build_experiment("s", {"x": "uniform(-5, 5)", "y": "uniform(-1, 1)"}, storage=path)
    message = str(info.value)
    assert "stored uniform(-5.0, 5.0) | given uniform(-1.0, 1.0)" in message
    assert "! y" in message and "  x" in message


def metrics_dict(x, y):
    return {"objective": x**2 + y**2, "accuracy": 1 / (1 + x**2)}


def metrics_list(x, y):
    return [
        {"name": "loss", "type": "objective", "value": x**2},
        {"name": "norm", "type": "statistic", "value": abs(y)},
    ]


def test_metrics_become_history_variables(client):
    exp = daskhpo.build_experiment("m", SPACE, seed=0)
    exp.workon(metrics_dict, max_trials=5, client=client)
    ds = exp.history
    np.testing.assert_allclose(ds["accuracy"].values, 1 / (1 + ds["x"].values ** 2))
    listed = daskhpo.build_experiment("l", SPACE, seed=0).workon(metrics_list, max_trials=5, client=client)
    np.testing.assert_allclose(listed.history["objective"].values, listed.history["x"].values ** 2)
    np.testing.assert_allclose(listed.history["norm"].values, abs(listed.history["y"].values))


def shifted(x, y, shift):
    return (x - shift) ** 2 + y**2


def test_fixed_keyword_arguments_reach_every_call(client):
    exp = daskhpo.build_experiment("kw", SPACE, seed=0).workon(shifted, max_trials=4, client=client, shift=3.0)
    ds = exp.history
    np.testing.assert_allclose(ds["objective"].values, (ds["x"].values - 3) ** 2 + ds["y"].values ** 2)
    with pytest.raises(ValueError, match="also parameters"):
        exp.workon(shifted, max_trials=8, client=client, x=1.0, shift=1.0)


def test_reserved_parameter_names_are_rejected():
    with pytest.raises(ValueError, match="\\['status'\\] are reserved"):
        daskhpo.build_experiment("r", {"status": "uniform(0, 1)"})


def test_grid_search_stops_when_exhausted(client):
    exp = daskhpo.build_experiment(
        "grid", {"x": "uniform(-1, 1)", "k": "choices(['a', 'b'])", "n": "randint(1, 2)"},
        algorithm=("grid", {"n_values": 3}))
    exp.workon(lambda x, k, n: x**2 + n, client=client)  # no max_trials: runs the whole grid
    ds = exp.history
    assert ds.sizes["trial"] == 3 * 2 * 2
    assert set(ds["x"].values) == {-1.0, 0.0, 1.0} and set(ds["k"].values) == {"a", "b"}


def test_default_values_are_evaluated_first(client):
    space = {"x": "uniform(-5, 5, default_value=1.0)", "y": "uniform(-5, 5, default_value=1.0)"}
    exp = daskhpo.build_experiment("defaults", space, seed=0).workon(rosenbrock, max_trials=5, client=client, n_workers=1)
    assert exp.history["x"].values[0] == 1.0 and exp.best["objective"] == 0.0


class Fixed(Optimizer):
    """A user-defined algorithm passed as an object."""

    name = "fixed"

    def ask(self, trial_id):
        return Suggestion({"x": 0.5, "y": float(trial_id % 3)}) if trial_id < 6 else None

    def tell(self, trial):
        pass


def test_optimizer_object_and_registered_name(client):
    exp = daskhpo.build_experiment("obj", SPACE, algorithm=Fixed(daskhpo.Space(SPACE), seed=0))
    exp.workon(rosenbrock, client=client)
    assert exp.history.sizes["trial"] == 6 and exp.history.attrs["algorithm"] == "fixed"
    daskhpo.register_optimizer("fixed", Fixed)
    assert daskhpo.build_experiment("n", SPACE, algorithm="fixed").optimizer.name == "fixed"
    with pytest.raises(ValueError, match="unknown algorithm 'nope'"):
        daskhpo.build_experiment("n", SPACE, algorithm="nope")
    with pytest.raises(ValueError, match="invalid configuration"):
        daskhpo.build_experiment("n", SPACE, algorithm=("random", {"bogus": 1}))


def test_invalid_suggestions_are_caught_before_running(client):
    class Wrong(Fixed):
        def ask(self, trial_id):
            return Suggestion({"x": 50.0, "y": 0.0})

    exp = daskhpo.build_experiment("wrong", SPACE, algorithm=Wrong(daskhpo.Space(SPACE)))
    with pytest.raises(ValueError, match="invalid configuration.*parameter 'x'"):
        exp.workon(rosenbrock, max_trials=1, client=client)


def test_loaded_experiment_reads_and_resumes_on_workon(client, tmp_path):
    path = tmp_path / "ro.nc"
    daskhpo.build_experiment("ro", SPACE, storage=path, seed=0).workon(rosenbrock, max_trials=3, client=client)
    loaded = daskhpo.load_experiment(path)
    assert loaded.history.sizes["trial"] == 3 and loaded.best is not None and loaded.read_only
    # workon resumes it from the file (stored space, algorithm and seed), taking the lock then
    loaded.workon(rosenbrock, max_trials=5, client=client)
    assert not loaded.read_only and loaded.optimizer.seed == 0
    assert loaded.history.sizes["trial"] == 5
    loaded.close()
    assert daskhpo.load_experiment(path).history.sizes["trial"] == 5
    with pytest.raises(FileNotFoundError):
        daskhpo.load_experiment(tmp_path / "missing.nc")


def test_tmp_executor_creates_and_closes_a_cluster():
    exp = daskhpo.build_experiment("tmp", SPACE, seed=0)
    with exp.tmp_executor("dask", n_workers=2, processes=False, dashboard_address=":0") as client:
        assert len(client.scheduler_info()["workers"]) == 2
        exp.workon(rosenbrock, max_trials=4)
    assert client.status == "closed"
    assert exp.history.sizes["trial"] == 4
    with pytest.raises(ValueError, match="only 'dask'"):
        with exp.tmp_executor("ray"):
            pass


def test_example_runs_on_its_own_local_cluster_and_resumes(tmp_path):
    """The README's third command: no client given, so workon starts a LocalCluster."""
    cmd = [sys.executable, str(ROOT / "examples" / "rosenbrock.py"), "--trials", "6"]
    for expected in (6, 12):
        out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert f"{expected} trials stored" in out.stdout
    assert daskhpo.load_experiment(tmp_path / "random-rosenbrock.nc").history.sizes["trial"] == 12


INTERRUPTED = """
import sys, time
import daskhpo
from distributed import Client, LocalCluster

def slow(x):
    time.sleep(0.2)
    return x

if __name__ == "__main__":
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as c, Client(c):
        exp = daskhpo.build_experiment("int", {"x": "uniform(0, 1)"}, storage=sys.argv[1], seed=0,
                                       snapshot_interval=1e9)
        exp.workon(slow, max_trials=1000)
"""


def test_ctrl_c_saves_history_and_reraises(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(INTERRUPTED)
    path = tmp_path / "int.nc"
    proc = subprocess.Popen([sys.executable, str(script), str(path)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = Path(f"{path}.journal")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (journal.exists() and journal.read_text().count('"event": "trial"') >= 4):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "KeyboardInterrupt" in stderr
    # The interrupt wrote a full snapshot: every trial is in the netCDF file itself.
    import xarray as xr

    snapshot = xr.load_dataset(path, engine="h5netcdf")
    assert snapshot.sizes["trial"] >= 4 and set(snapshot["status"].values) == {"completed"}
    assert '"event": "trial"' not in journal.read_text()  # emptied: only its header is left


def test_subscribers_see_each_trial_after_it_is_on_disk(client, tmp_path):
    path = tmp_path / "listen.nc"
    exp = daskhpo.build_experiment("listen", SPACE, storage=path, seed=0, snapshot_interval=1e9)
    seen = []

    def on_trial(record):
        journal = Path(f"{path}.journal").read_text().splitlines()
        seen.append((record.trial, json.loads(journal[-1])["trial"]))

    def broken_listener(record):
        raise RuntimeError("a dashboard bug must not stop the search")

    exp.subscribe(broken_listener)
    exp.subscribe(on_trial)
    exp.workon(rosenbrock, max_trials=6, client=client)
    assert len(seen) == 6 and all(trial == journaled for trial, journaled in seen)
