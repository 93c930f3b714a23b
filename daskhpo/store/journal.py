"""The journal: an append-only, ordered log of an experiment's events, one JSON line each.

It sits next to the history's snapshot (``exp.nc`` → ``exp.nc.journal``).  Every line is
one typed event of :mod:`daskhpo.records` with its sequence number ``seq``; a line is
written and flushed (and, with ``fsync=True``, forced to the disk) before the optimizer
hears of the event, so that a crash loses at most a line being written.  This module is
the only place that writes or parses journal lines: resume, :func:`daskhpo.load_experiment`
and the dashboard's file follower all read through it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable

from ..records import Event, event_from_json

__all__ = ["Journal", "JournalTail", "journal_path", "read_journal"]

logger = logging.getLogger(__name__)

#: appended to the storage path to name its journal
SUFFIX = ".journal"


def journal_path(path: str | os.PathLike) -> str:
    """The journal file of the history stored at ``path``."""
    return f"{os.fspath(path)}{SUFFIX}"


def _encode(event: Event) -> str:
    return json.dumps(event.to_json()) + "\n"


class Journal:
    """Appends events to the journal of a storage path.

    Parameters
    ----------
    path : path
        The storage path (the journal is ``<path>.journal``).
    fsync : bool, default False
        Force every line to the disk (``os.fsync``) before :meth:`append` returns, not
        only to the operating system: survives a power cut or a node crash, at the cost
        measured in ``benchmarks/overhead.py``.
    """

    def __init__(self, path: str | os.PathLike, *, fsync: bool = False) -> None:
        self.path = journal_path(path)
        self.fsync = fsync
        self._file = open(self.path, "a", encoding="utf-8")

    def append(self, event: Event) -> None:
        """Write one event; it is in the file when this returns."""
        self._file.write(_encode(event))
        self._sync()

    def restart(self, events: Iterable[Event] = ()) -> None:
        """Empty the journal and write ``events`` (called once a snapshot holds the rest)."""
        self._file.close()
        self._file = open(self.path, "w", encoding="utf-8")
        self._file.writelines(_encode(e) for e in events)
        self._sync()

    def _sync(self) -> None:
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """Release the file."""
        self._file.close()


def _decode(line: bytes | str, where: str) -> Event:
    """One journal line as its typed event; ``ValueError`` naming ``where`` if it is not one."""
    try:
        return event_from_json(json.loads(line))
    except (json.JSONDecodeError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where} is corrupt ({exc})") from None


def read_journal(path: str | os.PathLike) -> list[Event]:
    """Every event in the journal of ``path``, in file order.

    A torn last line (a crash while it was written) is skipped with a warning; a corrupt
    line before the last raises, since events after it would then be replayed out of
    context.

    Raises
    ------
    ValueError
        Naming the file and the line, for a corrupt line that is not the last.
    """
    name = journal_path(path)
    try:
        with open(name, "rb") as fh:
            lines = fh.read().split(b"\n")
    except FileNotFoundError:
        return []
    if lines and lines[-1] == b"":
        lines.pop()
    events = []
    for n, line in enumerate(lines):
        try:
            events.append(_decode(line, f"{name}: line {n + 1}"))
        except ValueError:
            if n != len(lines) - 1:
                raise
            logger.warning("%s: ignoring a torn last line", name)
    return events


class JournalTail:
    """Reads the events that another process appends to a journal, a poll at a time.

    Keeps its place between polls and notices when the writer emptied the journal (after
    a snapshot) and began it again.  A line still being written is left for the next poll.

    Parameters
    ----------
    path : path
        The storage path (the journal is ``<path>.journal``).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = journal_path(path)
        self._offset = 0
        self._head = b""

    def rewind(self) -> None:
        """Read the journal from its start at the next poll."""
        self._offset, self._head = 0, b""

    def poll(self) -> list[Event]:
        """The complete events written since the last poll (corrupt lines are skipped)."""
        try:
            with open(self.path, "rb") as fh:
                if self._head and fh.read(len(self._head)) != self._head:
                    self._offset = 0  # emptied and written again since the last poll
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []  # nothing, or a line being written
        complete = chunk[: end + 1]
        if self._offset == 0:
            self._head = complete[: complete.find(b"\n") + 1]
        self._offset += len(complete)
        events = []
        for line in complete.splitlines():
            try:
                events.append(_decode(line, self.path))
            except ValueError as exc:
                logger.warning("skipping a line: %s", exc)
        return events
