"""Resume from the storage file alone, the stored queue of enqueued configurations, and what a
resume may change: another name is refused; another algorithm or seed is written (and kept in
``algorithm_history``) only when a run starts, never by a call that runs nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import daskhpo
from daskhpo.engine import FakeExecutor

ROOT = Path(__file__).resolve().parents[2]
SPACE = {"x": "uniform(-5, 5)", "y": "uniform(-5, 5)"}


def sphere(x, y):
    return x**2 + y**2


def stored_attrs(path):
    return daskhpo.load_experiment(path).attrs


def test_build_experiment_resumes_from_the_file_alone(tmp_path):
    path = tmp_path / "alone.nc"
    with daskhpo.build_experiment("alone", SPACE, ("tpe", {"n_initial": 3}), path, 7) as exp:  # positional
        exp.run(FakeExecutor(sphere), 5)
    with daskhpo.build_experiment("alone", storage=path) as resumed:
        assert resumed.space == daskhpo.Space(SPACE)
        assert resumed.optimizer.name == "tpe" and resumed.optimizer.config["n_initial"] == 3
        assert resumed.optimizer.seed == 7
        resumed.run(FakeExecutor(sphere), 8)
        assert len(resumed.records()) == 8
    attrs = stored_attrs(path)
    assert attrs["algorithm"] == "tpe" and int(attrs["seed"]) == 7
    assert len(json.loads(attrs["algorithm_history"])) == 1  # nothing changed: no new entry


def test_build_experiment_without_space_needs_a_stored_experiment(tmp_path):
    with pytest.raises(ValueError, match="space is needed"):
        daskhpo.build_experiment("new", storage=tmp_path / "none.nc")
    with pytest.raises(ValueError, match="space is needed"):
        daskhpo.build_experiment("new")
    # the refused call left nothing behind and no lock: a real build works
    with daskhpo.build_experiment("new", SPACE, storage=tmp_path / "none.nc", seed=0) as exp:
        assert len(exp.records()) == 0


def test_load_experiment_run_resumes_with_the_stored_algorithm(tmp_path):
    path = tmp_path / "loaded.nc"
    with daskhpo.build_experiment("loaded", SPACE, "evolution", storage=path, seed=3) as exp:
        exp.run(FakeExecutor(sphere), 4)
    loaded = daskhpo.load_experiment(path)
    assert loaded.read_only and loaded.optimizer is None
    loaded.run(FakeExecutor(sphere), 7)
    assert not loaded.read_only
    assert loaded.optimizer.name == "evolution" and loaded.optimizer.seed == 3
    assert len(loaded.records()) == 7
    loaded.close()
    assert len(daskhpo.load_experiment(path).records()) == 7


def test_another_name_is_refused_and_changes_nothing(tmp_path):
    path = tmp_path / "named.nc"
    with daskhpo.build_experiment("first", SPACE, storage=path, seed=0) as exp:
        exp.run(FakeExecutor(sphere), 2)
    with pytest.raises(ValueError, match="name='second'.*holds experiment 'first'"):
        daskhpo.build_experiment("second", SPACE, storage=path)
    assert stored_attrs(path)["name"] == "first"
    with daskhpo.build_experiment("first", storage=path) as exp:  # the lock was not kept
        assert exp.name == "first"


@pytest.mark.parametrize("change", [{"algorithm": "tpe"}, {"seed": 5}, {"algorithm": "tpe", "seed": 5}])
def test_another_algorithm_or_seed_is_written_only_when_a_run_starts(tmp_path, change):
    path = tmp_path / "changed.nc"
    with daskhpo.build_experiment("changed", SPACE, "random", storage=path, seed=1) as exp:
        exp.run(FakeExecutor(sphere), 3)
    # a call that runs nothing: the stored experiment is as it was
    with daskhpo.build_experiment("changed", storage=path, **change) as exp:
        assert exp.optimizer.name == change.get("algorithm", "random") and exp.optimizer.seed == change.get("seed", 1)
        exp.run(FakeExecutor(sphere), 3)  # nothing to do
    attrs = stored_attrs(path)
    assert attrs["algorithm"] == "random" and int(attrs["seed"]) == 1
    assert [e["algorithm"] for e in json.loads(attrs["algorithm_history"])] == ["random"]
    # a run: the change is written and kept in the history of algorithms
    with daskhpo.build_experiment("changed", storage=path, **change) as exp:
        exp.run(FakeExecutor(sphere), 5)
    attrs = stored_attrs(path)
    assert attrs["algorithm"] == change.get("algorithm", "random") and int(attrs["seed"]) == change.get("seed", 1)
    history = json.loads(attrs["algorithm_history"])
    assert [(e["algorithm"], e["seed"], e["from_trial"]) for e in history] == [
        ("random", 1, 0), (change.get("algorithm", "random"), change.get("seed", 1), 3)]
    # resumed with nothing given: the changed algorithm and seed go on, no new entry
    with daskhpo.build_experiment("changed", storage=path) as exp:
        assert exp.optimizer.name == history[-1]["algorithm"] and exp.optimizer.seed == history[-1]["seed"]
        exp.run(FakeExecutor(sphere), 6)
    assert len(json.loads(stored_attrs(path)["algorithm_history"])) == 2


def test_enqueued_configurations_are_stored_and_run_once_after_close(tmp_path):
    path = tmp_path / "queue.nc"
    with daskhpo.build_experiment("queue", SPACE, storage=path, seed=0) as exp:
        exp.enqueue({"x": 1.5, "y": -2.0})
        exp.enqueue({"x": 0.25})  # partial
    assert daskhpo.load_experiment(path).enqueued == [{"x": 1.5, "y": -2.0}, {"x": 0.25}]
    with daskhpo.build_experiment("queue", storage=path) as exp:
        assert exp.enqueued == [{"x": 1.5, "y": -2.0}, {"x": 0.25}]
        exp.run(FakeExecutor(sphere, slots=1), 1)  # runs the first only
        assert exp.enqueued == [{"x": 0.25}]
    with daskhpo.build_experiment("queue", storage=path) as exp:
        assert exp.enqueued == [{"x": 0.25}]
        exp.run(FakeExecutor(sphere, slots=1), 4)
        assert exp.enqueued == []
    records = daskhpo.load_experiment(path).records()
    assert records[0].params == {"x": 1.5, "y": -2.0} and records[1].params["x"] == 0.25
    assert sum(r.params == {"x": 1.5, "y": -2.0} for r in records) == 1
    assert sum(r.params["x"] == 0.25 for r in records) == 1
    with daskhpo.build_experiment("queue", storage=path) as exp:
        assert exp.enqueued == []  # run once: not again on a later resume


def test_enqueued_configurations_survive_a_crash_of_the_driver(tmp_path):
    """The driver dies (os._exit, no snapshot) while the trial of the second enqueued
    configuration runs: on resume the first (finished, in the journal) is not run again, the
    second runs once."""
    path = tmp_path / "crash.nc"
    script = textwrap.dedent(f"""
        import os, daskhpo
        from daskhpo.engine import FakeExecutor

        def objective(x, y):
            if x == 3.0:
                os._exit(9)  # the driver dies mid-run: no snapshot, no close
            return x * x + y * y

        exp = daskhpo.build_experiment("crash", {SPACE!r}, storage={str(path)!r}, seed=0)
        exp.enqueue({{"x": 2.0, "y": 0.0}})
        exp.enqueue({{"x": 3.0, "y": 1.0}})
        exp.run(FakeExecutor(objective, slots=1), 10)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 9, done.stderr
    calls = []

    def objective(x, y):
        calls.append((x, y))
        return x * x + y * y

    with daskhpo.build_experiment("crash", storage=path) as exp:
        assert exp.enqueued == [{"x": 3.0, "y": 1.0}]
        exp.run(FakeExecutor(objective, slots=1), 4)
    assert calls[0] == (3.0, 1.0) and calls.count((2.0, 0.0)) == 0 and calls.count((3.0, 1.0)) == 1
    records = daskhpo.load_experiment(path).records()
    assert [r.params for r in records[:1]] == [{"x": 2.0, "y": 0.0}]
    assert sum(r.params == {"x": 3.0, "y": 1.0} for r in records) == 1

