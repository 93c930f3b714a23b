"""The Storage interface: in memory, and netCDF + journal with its writer lock inside."""

from __future__ import annotations

import json

import pytest

import daskhpo
from daskhpo.engine import FakeExecutor
from daskhpo.records import TrialRecord
from daskhpo.space import Space
from daskhpo.store import MemoryStorage, NetCDFStorage, Storage, StorageLock, open_storage, sessions

SPACE = Space({"x": "uniform(0, 1)"})
ATTRS = {"name": "s", "space": json.dumps(SPACE.to_dict()), "seed": 0}


def record(trial: int, objective: float) -> TrialRecord:
    return TrialRecord(trial=trial, params={"x": 0.5}, status="completed", objective=objective)


def test_both_implementations_are_storages_and_open_storage_picks_by_path(tmp_path):
    assert isinstance(MemoryStorage(), Storage) and isinstance(NetCDFStorage(tmp_path / "a.nc"), Storage)
    assert isinstance(open_storage(None), MemoryStorage)
    assert isinstance(open_storage(tmp_path / "a.nc"), NetCDFStorage)


def test_memory_keeps_nothing_outside_the_process():
    store = MemoryStorage()
    store.claim()
    assert store.read() is None and store.path is None
    history = store.open(SPACE, ATTRS, [record(0, 1.0)])
    history.append(record(1, 2.0))
    store.end_session("completed")
    store.close()
    assert [r.trial for r in history.records] == [0, 1] and sessions.ATTR not in history.attrs
    assert not store.superseded


def test_netcdf_round_trip_with_its_session(tmp_path):
    path = tmp_path / "s.nc"
    store = NetCDFStorage(path)
    store.claim()
    assert store.read() is None and store.writing
    history = store.open(SPACE, ATTRS, [record(0, 1.0)])
    history.append(record(1, 2.0))  # journaled: readable before any snapshot
    space, attrs, events = store.read()
    assert space == SPACE and [e.objective for e in events] == [1.0, 2.0]
    store.end_session("completed")
    store.close()
    assert not store.writing
    with StorageLock(path):  # released by close
        pass
    found = NetCDFStorage(path).read()
    assert [s["reason"] for s in sessions.sessions(found.attrs)] == ["completed"]


def test_a_second_writer_of_this_process_takes_over_and_the_first_stops_writing(tmp_path):
    path = tmp_path / "s.nc"
    first = NetCDFStorage(path)
    first.open(SPACE, ATTRS)
    second = NetCDFStorage(path)
    second.claim()
    assert first.superseded and not first.writing and second.writing
    first.history.append(record(0, 1.0))  # detached: kept in memory, never written
    assert NetCDFStorage(path).read().events == []
    first.close()  # releases nothing: the lock is the second's now
    with pytest.raises(daskhpo.StorageLocked):
        StorageLock(path).acquire()
    second.close()


def test_an_experiment_opened_again_in_this_process_refuses_to_run(tmp_path):
    path = tmp_path / "e.nc"
    first = daskhpo.build_experiment("e", {"x": "uniform(0, 1)"}, storage=path, seed=0)
    first.run(FakeExecutor(lambda x: x), max_trials=2)
    second = daskhpo.build_experiment("e", {"x": "uniform(0, 1)"}, storage=path)
    assert len(second.records()) == 2
    with pytest.raises(RuntimeError, match="opened again"):
        first.run(FakeExecutor(lambda x: x), max_trials=4)
    second.run(FakeExecutor(lambda x: x), max_trials=4)
    second.close()
    reasons = [s["reason"] for s in sessions.sessions(daskhpo.load_experiment(path).attrs)]
    assert reasons == ["completed", "completed"]  # one session per build, each ended by its run
