"""Recovery is never destruction: a journal without its snapshot is read, never erased.

The SIGKILL-ed driver of the issue's reproduction is in ``tests/test_faults.py``; here the
journal is made by a run that is left without its final snapshot (``detach``: what a
killed driver leaves), and by hand for a journal of an earlier version.
"""

from __future__ import annotations

import json
import logging
import os

import pytest

import daskhpo
from daskhpo.engine import FakeExecutor
from daskhpo.records import TrialRecord
from daskhpo.space import Space
from daskhpo.store import CorruptStorage, NetCDFStorage

SPACE = {"x": "uniform(-1, 1)", "kind": "choices(['a', 'b'])"}


def trial_lines(journal) -> int:
    return sum(1 for line in journal.read_text().splitlines() if '"event": "trial"' in line)


def driver_left_without_snapshot(path, n: int) -> list:
    """``n`` trials journaled by a driver that stops without a final snapshot (as a killed one)."""
    attrs = daskhpo.build_experiment("rec", SPACE, seed=0).attrs  # what build_experiment stores
    store = NetCDFStorage(path, snapshot_interval=1e9)
    assert store.read() is None
    history = store.open(Space(SPACE), attrs)
    for i in range(n):
        history.append(TrialRecord(trial=i, params={"x": i / n, "kind": "ab"[i % 2]}, status="completed",
                                   objective=(i / n) ** 2, attempts=1))
    records = history.records
    history.detach()  # the journal stays as a dead driver leaves it: no snapshot
    store.close()
    return records


def test_snapshot_moved_aside_then_build_and_load_recover_every_journaled_trial(tmp_path, caplog):
    path = tmp_path / "exp.nc"
    records = driver_left_without_snapshot(path, 12)
    journal = tmp_path / "exp.nc.journal"
    assert trial_lines(journal) == 12
    os.rename(path, tmp_path / "exp.nc.damaged")  # what the CorruptStorage message says to do
    before = journal.read_bytes()
    with caplog.at_level(logging.WARNING, logger="daskhpo"):
        loaded = daskhpo.load_experiment(path)
    assert [r.trial for r in loaded.records()] == [r.trial for r in records]
    assert [r.params for r in loaded.records()] == [r.params for r in records]
    assert journal.read_bytes() == before  # read-only
    assert "recovering the 12 finished trial(s)" in caplog.text
    exp = daskhpo.build_experiment("rec", SPACE, storage=path)
    assert [r.trial for r in exp.records()] == [r.trial for r in records]
    exp.run(FakeExecutor(lambda x, kind: x * x), max_trials=15)
    exp.close()
    again = daskhpo.load_experiment(path).records()
    assert len(again) == 15 and len({r.trial for r in again}) == 15
    assert [r.params for r in again[:12]] == [r.params for r in records]


def test_a_journal_of_an_earlier_version_alone_is_an_error_and_is_kept(tmp_path):
    path = tmp_path / "old.nc"
    journal = tmp_path / "old.nc.journal"
    lines = [TrialRecord(trial=i, params={"x": 0.5, "kind": "a"}, status="completed", objective=0.25, seq=i)
             for i in range(3)]
    journal.write_text("".join(json.dumps(r.to_json()) + "\n" for r in lines))  # no header
    before = journal.read_bytes()
    with pytest.raises(CorruptStorage, match="backup"):
        daskhpo.build_experiment("old", SPACE, storage=path)
    with pytest.raises(CorruptStorage):
        daskhpo.load_experiment(path)
    assert journal.read_bytes() == before and not path.exists()


def test_open_without_read_sets_a_journal_with_other_trials_aside(tmp_path, caplog):
    path = tmp_path / "g.nc"
    journal = tmp_path / "g.nc.journal"
    record = TrialRecord(trial=7, params={"x": 0.5, "kind": "a"}, status="completed", objective=0.25, seq=0)
    journal.write_text(json.dumps(record.to_json()) + "\n")
    before = journal.read_bytes()
    store = NetCDFStorage(path)
    with caplog.at_level(logging.WARNING, logger="daskhpo"):
        store.open(Space(SPACE), {"name": "g", "space": json.dumps(Space(SPACE).to_dict())})
    store.close()
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("g.nc.journal.set-aside-")]
    assert len(aside) == 1 and aside[0].read_bytes() == before
    assert "set aside" in caplog.text


def test_a_damaged_snapshot_is_set_aside_not_written_over_by_open(tmp_path):
    path = tmp_path / "d.nc"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"damaged" * 50)
    store = NetCDFStorage(path)
    store.open(Space(SPACE), {"name": "d", "space": json.dumps(Space(SPACE).to_dict())})
    store.close()
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("d.nc.set-aside-")]
    assert len(aside) == 1 and aside[0].read_bytes().endswith(b"damaged" * 50)
