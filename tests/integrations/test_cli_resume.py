"""``daskhpo hunt`` on a stored experiment: another ``-n`` is refused before anything runs, and
without ``--algorithm`` the stored algorithm goes on (the default is no longer ``random``)."""

from __future__ import annotations

import json

import pytest

import daskhpo
from daskhpo.engine import FakeExecutor
from daskhpo.integrations.cli import main


def test_hunt_with_another_name_is_refused_and_changes_nothing(tmp_path, capsys, monkeypatch):
    path = tmp_path / "h.nc"
    with daskhpo.build_experiment("stored", {"x": "uniform(0, 1)"}, "tpe", storage=path, seed=2) as exp:
        exp.run(FakeExecutor(lambda x: x), 2)
    monkeypatch.chdir(tmp_path)
    code = main(["hunt", "-n", "renamed", "--storage", str(path), "--max-trials", "2", "--no-progress",
                 "--", "true", "--x~uniform(0, 1)"])
    assert code == 2
    assert "holds experiment 'stored'" in capsys.readouterr().err
    attrs = daskhpo.load_experiment(path).attrs
    assert attrs["name"] == "stored" and attrs["algorithm"] == "tpe"


@pytest.mark.slow  # hunt starts its own cluster: never in the fast lane
def test_hunt_without_algorithm_resumes_with_the_stored_one(tmp_path, capsys, monkeypatch):
    path = tmp_path / "h.nc"
    with daskhpo.build_experiment("stored", {"x": "uniform(0, 1)"}, "tpe", storage=path, seed=2) as exp:
        exp.run(FakeExecutor(lambda x: x), 2)
    monkeypatch.chdir(tmp_path)
    code = main(["hunt", "-n", "stored", "--storage", str(path), "--max-trials", "2", "--workers", "1",
                 "--no-progress", "--", "true", "--x~uniform(0, 1)"])
    assert code == 0, capsys.readouterr().err
    attrs = daskhpo.load_experiment(path).attrs
    assert attrs["algorithm"] == "tpe" and int(attrs["seed"]) == 2
    assert [e["algorithm"] for e in json.loads(attrs["algorithm_history"])] == ["tpe"]
