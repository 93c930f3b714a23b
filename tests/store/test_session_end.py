"""A session's end reason reaches the disk, so the next session does not call it ``died``."""

from __future__ import annotations

import json

import pytest

import daskhpo
from daskhpo.engine import FakeExecutor
from daskhpo.store import read_snapshot

SPACE = {"x": "uniform(-1, 1)"}


def stored_sessions(path) -> list[dict]:
    return json.loads(read_snapshot(path)[1]["driver_sessions"])


def test_completed_then_nothing_to_do_then_closed_are_on_disk(tmp_path):
    path = tmp_path / "s.nc"
    exp = daskhpo.build_experiment("s", SPACE, storage=path, seed=0, snapshot_interval=0)
    exp.run(FakeExecutor(lambda x: x * x), max_trials=4)  # a snapshot after every trial
    assert stored_sessions(path)[-1]["reason"] == "completed"  # before close: the run's last snapshot
    exp.close()
    exp = daskhpo.build_experiment("s", SPACE, storage=path)
    exp.run(FakeExecutor(lambda x: x * x), max_trials=4)  # nothing left to run
    assert stored_sessions(path)[-1]["reason"] == "nothing to do"
    exp.close()
    exp = daskhpo.build_experiment("s", SPACE, storage=path)
    exp.close()  # no run at all
    exp = daskhpo.build_experiment("s", SPACE, storage=path)
    exp.close()
    reasons = [s["reason"] for s in stored_sessions(path)]
    assert reasons == ["completed", "nothing to do", "closed", "closed"]
    assert all(s["end"] is not None for s in stored_sessions(path))


def test_an_error_ending_the_run_is_on_disk(tmp_path):
    path = tmp_path / "e.nc"

    def broken(x):
        raise ValueError("no")

    exp = daskhpo.build_experiment("e", SPACE, storage=path, seed=0)
    with pytest.raises(daskhpo.TooManyBrokenTrials):
        exp.run(FakeExecutor(broken), max_trials=10, max_broken=1, quarantine_after=None)
    (session,) = stored_sessions(path)
    assert session["reason"].startswith("error: TooManyBrokenTrials")
    exp.close()
    assert stored_sessions(path)[0]["reason"].startswith("error: TooManyBrokenTrials")  # close keeps it
    exp = daskhpo.build_experiment("e", SPACE, storage=path)
    exp.close()
    assert [s["reason"][:6] for s in stored_sessions(path)] == ["error:", "closed"]
