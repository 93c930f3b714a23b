"""The experiment's history: an :class:`xarray.Dataset` that is durable as it grows.

The dataset (its variables, coordinates and attrs) is described in
:mod:`daskhpo.store.dataset`.

Storage: a snapshot plus an ordered journal
-------------------------------------------
``storage="exp.nc"`` is a netCDF-4 file that xarray opens directly.  Rewriting it after
every trial would make each trial cost O(history), so each event (a trial submitted, a
report, a finished trial) is first appended as one line to the journal ``exp.nc.journal``
(see :mod:`daskhpo.store.journal`) and flushed before the optimizer hears of it.  Every
``snapshot_interval`` seconds, and when the engine stops (normally, on an error or on
Ctrl-C), the whole history is written to a temporary file, ``fsync``-ed and moved over
``exp.nc`` with :func:`os.replace`; then the journal is emptied.  A crash at any moment
leaves a readable snapshot and a journal whose complete lines hold every event since;
loading merges the two (an event in both is taken once), ignores a torn last line, and
orders every event by its sequence number, so that resume replays them to a fresh
optimizer exactly in the order the live one saw them.

Recovery is never destruction.  The journal begins with the space and attrs (its
header), so a journal whose snapshot is missing (lost, or damaged and moved aside) is an
experiment on its own: :func:`read_history` recovers every event in it, with a warning.
A damaged snapshot raises :class:`~daskhpo.store.errors.CorruptStorage` and changes
nothing.  The journal is emptied only once a snapshot holding its events is in place.

Reports of trials still running are kept out of the snapshot (the dataset holds finished
trials) and written again, with their sequence numbers, to the fresh journal; reports of
trials that never finished (the client crashed while they ran) are dropped when loading.
Checkpoints are not part of the history (see :mod:`daskhpo.store.checkpoints`).

The history is shared by the experiment's loop (which appends) and readers in other
threads (a dashboard, a progress bar): every method takes its lock.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import dask
import xarray as xr

from ..records import FINISHED, Event, ReportRecord, TrialRecord, TrialStarted
from ..space import Space
from .dataset import REPORTED, read_snapshot, to_dataset
from .errors import ENGINE, PARSE_ERRORS, CorruptStorage
from .journal import Journal, journal_header, journal_path, read_journal

__all__ = ["History", "load_history", "read_history", "read_snapshot", "REPORTED"]

logger = logging.getLogger(__name__)


class History:
    """Trials of one experiment and their reports, in memory and (optionally) on disk.

    Parameters
    ----------
    space : Space
        Decodes and encodes parameter values.
    attrs : dict
        Dataset attrs (strings and numbers only).
    path : str, optional
        Storage path; without it the history lives in memory.
    events : iterable of TrialRecord or ReportRecord, optional
        Events loaded from storage (see :func:`read_history`), in their order; records
        without a sequence number are numbered in the order given.
    snapshot_interval : float
        Seconds between full snapshots while trials arrive.
    fsync : bool, default False
        Force each journal line to the disk before :meth:`append` returns (see
        :class:`daskhpo.store.journal.Journal`).
    """

    def __init__(
        self,
        space: Space,
        attrs: Mapping[str, Any],
        path: str | os.PathLike | None = None,
        events: Iterable[Event] = (),
        snapshot_interval: float = 30.0,
        fsync: bool = False,
    ) -> None:
        self.space = space
        self.attrs = dict(attrs)
        self.path = os.fspath(path) if path is not None else None
        self.snapshot_interval = snapshot_interval
        self._lock = threading.RLock()
        self._records: dict[int, TrialRecord] = {}
        #: trial -> step -> report
        self._reports: dict[int, dict[float, ReportRecord]] = {}
        self._next_seq = 0
        for event in events:
            self._add(event)
        self._dataset: xr.Dataset | None = None
        #: the attrs ``_dataset`` was made with
        self._dataset_attrs: dict[str, Any] = {}
        self._journal = Journal(self.path, fsync=fsync, header=self._header) if self.path is not None else None
        self._last_snapshot = time.monotonic()
        if self.path is not None:
            self.snapshot()

    def __getstate__(self) -> dict[str, Any]:
        # A pickled history is a read-only copy: no lock, no journal writer.
        state = dict(self.__dict__)
        state["_lock"], state["_journal"] = None, None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_dataset_attrs", {})  # pickled before it existed
        self._lock = threading.RLock()

    def _header(self) -> dict[str, Any]:
        """The journal's first line: what makes the journal readable without its snapshot."""
        space = self.attrs.get("space")
        # "written" makes every header unique: a reader that follows the journal (JournalTail)
        # tells a journal emptied and begun again by its first line.
        return {"space": space if isinstance(space, str) else json.dumps(self.space.to_dict()),
                "attrs": dict(self.attrs), "written": time.time_ns()}

    def detach(self) -> None:
        """Stop writing: release the journal file without a snapshot (a read-only copy remains)."""
        with self._lock:
            if self._journal is not None:
                self._journal.close()
                self._journal = None

    def _add(self, event: Event) -> Event:
        if event.seq < 0:
            event = event.replace(seq=self._next_seq)
        self._next_seq = max(self._next_seq, event.seq + 1)
        if isinstance(event, TrialRecord):
            self._records[event.trial] = event
        elif isinstance(event, ReportRecord):
            self._reports.setdefault(event.trial, {})[event.step] = event
        return event

    # -- access ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._records)

    @property
    def records(self) -> list[TrialRecord]:
        """Finished trials, by trial id."""
        with self._lock:
            return [self._records[k] for k in sorted(self._records)]

    def events(self) -> list[TrialRecord | ReportRecord]:
        """Every finished trial and every report of one, in the order they happened."""
        with self._lock:
            events: list[TrialRecord | ReportRecord] = list(self._records.values())
            for trial_id in self._records:
                events.extend(self._reports.get(trial_id, {}).values())
        return sorted(events, key=lambda e: e.seq)

    def reports(self, trial_id: int) -> list[ReportRecord]:
        """The intermediate reports of a trial, by step."""
        with self._lock:
            per_trial = self._reports.get(trial_id, {})
            return [per_trial[s] for s in sorted(per_trial)]

    @property
    def next_trial_id(self) -> int:
        """The smallest id above every stored trial."""
        with self._lock:
            return max(self._records, default=-1) + 1

    def count(self, *statuses: str) -> int:
        """Number of trials with one of ``statuses`` (default: ``"completed"``)."""
        wanted = set(statuses or ("completed",))
        with self._lock:
            return sum(1 for r in self._records.values() if r.status in wanted)

    @property
    def finished(self) -> int:
        """Trials that count towards ``max_trials`` (completed or pruned)."""
        return self.count(*FINISHED)

    # -- writing -----------------------------------------------------------------------
    def _log(self, event: Event) -> Event:
        event = self._add(event)
        if self._journal is not None:
            self._journal.append(event)
        return event

    def append_start(self, start: TrialStarted) -> TrialStarted:
        """Journal that a trial was handed to the cluster; returns it with its ``seq``."""
        with self._lock:
            return self._log(start)

    def append_report(self, report: ReportRecord) -> ReportRecord:
        """Add an intermediate report; journaled (flushed) when this returns, with its ``seq``."""
        with self._lock:
            report = self._log(report)
            if report.trial in self._records:
                self._dataset = None
            return report

    def append(self, record: TrialRecord) -> TrialRecord:
        """Add a finished trial; journaled (flushed) when this returns, with its ``seq``."""
        with self._lock:
            record = self._log(record)
            self._dataset = None
            due = self._journal is not None and time.monotonic() - self._last_snapshot > self.snapshot_interval
        if due:
            self.snapshot()
        return record

    def snapshot(self) -> None:
        """Write the whole history to the storage path atomically, then empty the journal."""
        if self._journal is None:  # in memory, or a read-only copy
            return
        with self._lock:
            tmp = f"{self.path}.tmp-{os.getpid()}"
            # A local lock: with a default Dask client, xarray would take a distributed
            # lock on the scheduler for each write (a round trip, and an error once the
            # scheduler is gone: the very moment the history must reach the disk).
            with dask.config.set(scheduler="threads"):
                self.to_dataset().to_netcdf(tmp, engine=ENGINE)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            # Emptied only after the snapshot is in place: a crash in between leaves events
            # in both files, which loading takes once.
            running = [r for t in sorted(set(self._reports) - set(self._records)) for r in self.reports(t)]
            self._journal.restart(sorted(running, key=lambda r: r.seq))
            self._last_snapshot = time.monotonic()

    def close(self) -> None:
        """Snapshot and release the journal file."""
        if self._journal is None:
            return
        self.snapshot()
        self._journal.close()
        self._journal = None

    # -- the dataset -------------------------------------------------------------------
    def to_dataset(self) -> xr.Dataset:
        """The history as an :class:`xarray.Dataset` (cached until the next append).

        Its attrs are always the current :attr:`attrs` (a session's end set after the
        last append is in the next snapshot).
        """
        with self._lock:
            if self._dataset is None or _changed(self._dataset_attrs, self.attrs):
                self._dataset_attrs = dict(self.attrs)
                # rebuilt when attrs were set between events too (a session's end, a quarantine,
                # the enqueued queue): never a stale copy, on disk or shown; escaped as on disk
                self._dataset = to_dataset(self.space, self.attrs, self.records, self._reports)
            return self._dataset


def _changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    try:
        return bool(old != new)
    except ValueError:  # array-valued attrs (an old file's): compared by value is ambiguous
        return True


def read_history(path: str | os.PathLike) -> tuple[Space, dict, list[TrialRecord | ReportRecord]]:
    """Read a stored history: its space, its attrs and its events in their original order.

    The snapshot and the journal are merged (an event in both is taken once); reports of
    trials that never finished are dropped.  Events of histories written before sequence
    numbers existed are ordered by trial id, each trial after its reports.

    Without a snapshot, a journal that begins with its header is read alone (its events
    are recovered, with a warning).

    Raises
    ------
    FileNotFoundError
        If there is no history at ``path`` (no snapshot, no journal with a header).
    CorruptStorage
        For a damaged snapshot, or a corrupt journal line that is not the last (the files
        are left untouched); also a ``ValueError``.
    """
    try:
        space, attrs, stored = read_snapshot(path)
    except FileNotFoundError:
        space, attrs = _journal_alone(path)
        stored = []
    records: dict[int, TrialRecord] = {}
    reports: dict[tuple[int, float], ReportRecord] = {}
    in_flight: set[int] = set()
    for event in [*stored, *read_journal(path)]:
        if isinstance(event, TrialRecord):
            records.setdefault(event.trial, event)
        elif isinstance(event, ReportRecord):
            reports.setdefault((event.trial, event.step), event)
        elif isinstance(event, TrialStarted):
            in_flight.add(event.trial)
    in_flight -= set(records)
    if in_flight:
        logger.info("%s: %d trial(s) were running when it was last written; they are not resumed", path, len(in_flight))
    orphans = {t for t, _ in reports} - set(records)
    if orphans:
        logger.info("%s: dropping the reports of %d trial(s) that never finished", path, len(orphans))
    events = [*records.values(), *(r for r in reports.values() if r.trial in records)]
    # Legacy files (no sequence numbers): by trial id, each trial after its reports.
    events.sort(key=lambda e: (e.seq, e.trial, isinstance(e, TrialRecord), getattr(e, "step", 0.0)))
    return space, attrs, events


def _journal_alone(path: str | os.PathLike) -> tuple[Space, dict]:
    """The space and attrs of a journal's header, when its snapshot is missing."""
    header = journal_header(path)
    if header is None:
        if any(isinstance(e, TrialRecord) for e in read_journal(path)):
            raise CorruptStorage(
                journal_path(path), "its snapshot is missing and it was written before journals held the space",
                advice=f"Restore {os.fspath(path)!r} from a backup (the journal stays beside it); nothing "
                       "was changed.")
        raise FileNotFoundError(f"no storage file at {os.fspath(path)!r}")
    try:
        space = Space(json.loads(header["space"]))
    except PARSE_ERRORS as exc:
        raise CorruptStorage(journal_path(path), f"its header's space: {type(exc).__name__}: {exc}") from None
    trials = sum(1 for e in read_journal(path) if isinstance(e, TrialRecord))
    logger.warning("%s: no snapshot; recovering the %d finished trial(s) of its journal %s", os.fspath(path),
                   trials, journal_path(path))
    return space, dict(header["attrs"])


def load_history(path: str | os.PathLike) -> History:
    """A stored history, read into memory (read-only: it writes nothing to ``path``).

    Raises
    ------
    FileNotFoundError
        If there is no history at ``path``.
    """
    space, attrs, events = read_history(path)
    return History(space, attrs, None, events)
