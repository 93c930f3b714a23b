"""An experiment stored in a netCDF-4 snapshot and its journal, written by one process.

The storage's writer lock (:mod:`daskhpo.store.lock`) lives here, and so does the record
of which object of this process writes each path: a second :class:`NetCDFStorage` of the
same path in the same process (a notebook cell run again, a script resuming what it just
ran) takes the lock over from the first, which stops writing and reports itself
:attr:`~NetCDFStorage.superseded`; another process holding the lock gets
:class:`~daskhpo.store.lock.StorageLocked`.

Recovery is never destruction: :meth:`NetCDFStorage.open` starts its history (which
writes a snapshot and empties the journal) only over files whose trials it was given; a
file holding trials it was not given (an unreadable snapshot, a journal read by no one)
is renamed ``<file>.set-aside-<time>`` first, with a warning, never removed.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from ..records import Event
from ..space import Space
from . import sessions
from .base import Stored
from .checkpoints import CheckpointStore
from .errors import CorruptStorage, set_aside
from .history import History, read_history, read_snapshot
from .journal import journal_path, read_journal
from .lock import StorageLock

__all__ = ["NetCDFStorage"]

logger = logging.getLogger(__name__)

#: the storage object of this process that writes each path (by its real path)
_WRITERS: weakref.WeakValueDictionary[str, NetCDFStorage] = weakref.WeakValueDictionary()


class NetCDFStorage:
    """A :class:`~daskhpo.store.base.Storage` in ``path`` (netCDF-4) and ``path.journal``.

    Parameters
    ----------
    path : path
        The history's file; the journal, lock and checkpoints go beside it.
    snapshot_interval : float, default 30
        Seconds between full rewrites of the file while trials arrive.
    fsync : bool, default False
        Force each journal line to the disk (see :class:`daskhpo.store.journal.Journal`).
    """

    def __init__(self, path: str | os.PathLike, *, snapshot_interval: float = 30.0, fsync: bool = False) -> None:
        self._path = os.fspath(path)
        self.snapshot_interval = snapshot_interval
        self.fsync = fsync
        self._lock: StorageLock | None = None
        self._superseded = False
        #: the trial ids :meth:`read` found (``None`` until it ran), for :meth:`open`'s check
        self._read_trials: set[int] | None = None
        #: the history (``None`` until :meth:`open`)
        self.history: History | None = None
        #: the checkpoints, in files beside the history (``None`` until :meth:`open`)
        self.checkpoints: CheckpointStore | None = None

    @property
    def path(self) -> str:
        return self._path

    @property
    def kept(self) -> str:
        return f"stored in {self._path}"

    @property
    def superseded(self) -> bool:
        return self._superseded

    @property
    def writing(self) -> bool:
        """Whether this object holds the storage's writer lock."""
        return self._lock is not None

    def claim(self) -> None:
        """Take the writer lock: from another process's hands never, from this process's over.

        Raises
        ------
        daskhpo.store.lock.StorageLocked
            When another process writes this path (the message names its host and pid).
        """
        if self._lock is not None:
            return
        key = os.path.realpath(self._path)
        previous = _WRITERS.pop(key, None)
        if previous is not None and previous.writing:
            self._lock = previous._hand_over()
        else:
            self._lock = StorageLock(self._path).acquire()
        _WRITERS[key] = self

    def _hand_over(self) -> StorageLock:
        """Stop writing and give the lock to a later writer of this process."""
        lock, self._lock = self._lock, None
        if self.history is not None:
            self.history.detach()
        self._superseded = True
        return lock

    def read(self) -> Stored | None:
        """The stored experiment (snapshot and journal merged), or ``None`` when there is none.

        A journal without its snapshot is read alone (see
        :func:`~daskhpo.store.history.read_history`).

        Raises
        ------
        daskhpo.store.errors.CorruptStorage
            For a damaged snapshot or journal (nothing is changed).
        """
        try:
            stored = Stored(*read_history(self._path))
        except FileNotFoundError:
            if os.path.exists(self._path):  # (a snapshot that vanished while read: not nothing)
                raise
            self._read_trials = set()
            return None
        self._read_trials = {e.trial for e in stored.events}
        return stored

    def _set_aside_unheld(self, events: list[Event]) -> None:
        """Rename the files that hold trials ``events`` lack, before the history rewrites them."""
        given = {e.trial for e in events}
        if self._read_trials is not None:  # read under this lock: what is on disk is what was read
            if self._read_trials <= given:
                return
            lost = self._read_trials - given
            for name in (self._path, journal_path(self._path)):
                if os.path.exists(name):
                    set_aside(name, f"it holds {len(lost)} trial(s) the experiment opened on it was not given")
            return
        if os.path.exists(self._path):
            try:
                held = {e.trial for e in read_snapshot(self._path)[2]}
            except CorruptStorage as exc:
                set_aside(self._path, f"unreadable ({exc.reason}) and about to be written over")
            else:
                if not held <= given:
                    set_aside(self._path, f"it holds {len(held - given)} trial(s) the experiment was not given")
        journal = journal_path(self._path)
        if os.path.exists(journal):
            try:
                held = {e.trial for e in read_journal(self._path)}
            except CorruptStorage as exc:
                set_aside(journal, f"unreadable ({exc.reason}) and about to be emptied")
            else:
                if not held <= given:
                    set_aside(journal, f"it holds {len(held - given)} trial(s) the experiment was not given")

    def open(
        self,
        space: Space,
        attrs: Mapping[str, Any],
        events: Iterable[Event] = (),
        *,
        stored_attrs: Mapping[str, Any] | None = None,
        keep_checkpoints: str | int = "all",
    ) -> History:
        """Start writing; records this process's driver session in the first snapshot.

        Takes the writer lock first if :meth:`claim` was not called.
        """
        self.claim()
        events = list(events)
        self._set_aside_unheld(events)
        attrs = {**attrs, sessions.ATTR: sessions.begin(stored_attrs or {})}
        # The session's start is in this first snapshot: a session that dies leaves its trace.
        self.history = History(space, attrs, self._path, events, self.snapshot_interval, fsync=self.fsync)
        self.checkpoints = CheckpointStore(self._path, keep=keep_checkpoints)
        return self.history

    def snapshot(self) -> None:
        if self.history is not None:
            self.history.snapshot()

    def end_session(self, reason: str) -> None:
        if self._lock is not None and self.history is not None:  # only the writer has a session
            self.history.attrs[sessions.ATTR] = sessions.end(self.history.attrs, reason)

    def close(self) -> None:
        """Write the history (with this session's end), stop writing and release the lock."""
        if self._lock is not None and self.history is not None:
            # a session no run ended (built, then closed) ended cleanly all the same
            self.history.attrs[sessions.ATTR] = sessions.end(self.history.attrs, "closed", keep=True)
        if self.history is not None:
            self.history.close()
            self.history.detach()
        lock, self._lock = self._lock, None
        if lock is not None:
            key = os.path.realpath(self._path)
            if _WRITERS.get(key) is self:
                del _WRITERS[key]
            lock.release()

    def __repr__(self) -> str:
        state = "writing" if self._lock is not None else "superseded" if self._superseded else "not writing"
        return f"<NetCDFStorage {self._path!r} ({state})>"
