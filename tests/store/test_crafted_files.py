"""Crafted or damaged storage files give CorruptStorage naming the file and what is wrong,
never a raw SyntaxError, JSONDecodeError, KeyError or AttributeError."""

from __future__ import annotations

import json

import pytest
import xarray as xr

import daskhpo
from daskhpo.engine import FakeExecutor
from daskhpo.records import TrialRecord
from daskhpo.store import CorruptStorage

SPACE = {"x": "uniform(-1, 1)", "kind": "choices([None, 'a'])"}


@pytest.fixture
def stored(tmp_path):
    path = tmp_path / "c.nc"
    exp = daskhpo.build_experiment("c", SPACE, storage=path, seed=0)
    exp.run(FakeExecutor(lambda x, kind: x * x), max_trials=3)
    exp.close()
    return path


def rewrite(path, change) -> None:
    ds = xr.load_dataset(path, engine="h5netcdf")
    ds = change(ds)
    path.unlink()
    ds.to_netcdf(path, engine="h5netcdf")


def attr(name, value):
    def change(ds):
        ds.attrs[name] = value
        return ds
    return change


def column(name, value):
    def change(ds):
        ds[name] = ("trial", [value] * ds.sizes["trial"])
        return ds
    return change


CRAFTED = {
    "space not JSON": attr("space", "{not json"),
    "space JSON of a list": attr("space", "[1, 2]"),
    "a prior that does not parse": attr("space", json.dumps({"x": "uniform(0, ", "kind": "choices([None, 'a'])"})),
    "algorithm_config not JSON": attr("algorithm_config", "{'a': 1"),
    "objectives not JSON": attr("objectives", "nope"),
    "quarantined a dict": attr("quarantined", "{}"),
    "a repr column not a literal": column("kind", "__import__('os')"),
    "status missing": lambda ds: ds.drop_vars("status"),
    "order not a number": column("order", "x"),
}


@pytest.mark.parametrize("what", list(CRAFTED))
def test_a_crafted_snapshot_is_corrupt_storage_naming_the_file(stored, what):
    rewrite(stored, CRAFTED[what])
    for open_it in (daskhpo.load_experiment, lambda p: daskhpo.build_experiment("c", SPACE, storage=p)):
        with pytest.raises(CorruptStorage) as info:
            open_it(stored)
        assert repr(str(stored)) in str(info.value)


JOURNAL_LINES = {
    "a JSON list": "[1, 2]",
    "a string": '"trial"',
    "a trial id that is a string": json.dumps({**TrialRecord(1, {"x": 0.1, "kind": "a"}, "completed").to_json(),
                                               "trial": "abc"}),
    "params that are a list": json.dumps({**TrialRecord(1, {}, "completed").to_json(), "params": [1]}),
    "a metric that is a string": json.dumps({**TrialRecord(1, {"x": 0.1, "kind": "a"}, "completed").to_json(),
                                             "metrics": {"m": "1"}}),
    "not JSON": "{'event': 'trial'",
}


@pytest.mark.parametrize("what", list(JOURNAL_LINES))
def test_a_crafted_journal_line_is_corrupt_storage_naming_the_line(stored, what):
    journal = stored.with_name("c.nc.journal")
    good = json.dumps(TrialRecord(9, {"x": 0.1, "kind": "a"}, "completed", objective=0.01, seq=99).to_json())
    journal.write_text(journal.read_text() + JOURNAL_LINES[what] + "\n" + good + "\n")
    before = journal.read_bytes()
    with pytest.raises(CorruptStorage, match=r"c\.nc\.journal: line \d"):
        daskhpo.load_experiment(stored)
    with pytest.raises(CorruptStorage, match=r"c\.nc\.journal: line \d"):
        daskhpo.build_experiment("c", SPACE, storage=stored)
    assert journal.read_bytes() == before


def test_a_damaged_checkpoint_is_corrupt_storage(tmp_path):
    from daskhpo.store import CheckpointStore

    store = CheckpointStore(str(tmp_path / "k.nc"))
    store.put(3, ("value", {"epoch": 1}))
    assert store.get(3) == ("value", {"epoch": 1})
    (tmp_path / "k.nc.checkpoints" / "trial-3.pkl").write_bytes(b"\x80\x05garbage")
    with pytest.raises(CorruptStorage, match="trial-3.pkl"):
        store.get(3)
