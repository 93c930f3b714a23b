"""The journal: an append-only, ordered log of an experiment's events, one JSON line each.

It sits next to the history's snapshot (``exp.nc`` → ``exp.nc.journal``).  Every line is
one typed event of :mod:`daskhpo.records` with its sequence number ``seq``; a line is
written and flushed (and, with ``fsync=True``, forced to the disk) before the optimizer
hears of the event, so that a crash loses at most a line being written.  This module is
the only place that writes or parses journal lines: resume, :func:`daskhpo.load_experiment`
and the dashboard's file follower all read through it.

Each journal begins with a *header* line, ``{"event": "header", "space": ..., "attrs": ...}``:
the experiment's space and attrs as of the snapshot the journal follows.  With it, a
journal alone (its snapshot lost or damaged and moved aside) is a readable experiment;
journals of earlier versions have none.  Lines are ASCII (JSON escapes everything else),
so any string a trial holds, NUL and lone surrogates included, is written and read back
unchanged.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from ..records import Event, ReportRecord, TrialRecord, TrialStarted, event_from_json
from .errors import PARSE_ERRORS, CorruptStorage

__all__ = ["Journal", "JournalTail", "journal_path", "read_journal", "journal_header", "HEADER"]

logger = logging.getLogger(__name__)

#: appended to the storage path to name its journal
SUFFIX = ".journal"
#: the ``event`` of a journal's first line, which holds the space and attrs
HEADER = "header"


def journal_path(path: str | os.PathLike) -> str:
    """The journal file of the history stored at ``path``."""
    return f"{os.fspath(path)}{SUFFIX}"


def _encode(event: Event) -> str:
    return json.dumps(event.to_json()) + "\n"


def _plain(value: Any) -> Any:
    """A numpy value (an attr read from a snapshot) as JSON can hold it."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


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
    header : callable, optional
        Gives the header (``{"space": ..., "attrs": ...}``) written first in an empty
        journal and after every :meth:`restart`.
    """

    def __init__(self, path: str | os.PathLike, *, fsync: bool = False,
                 header: Callable[[], dict[str, Any]] | None = None) -> None:
        self.path = journal_path(path)
        self.fsync = fsync
        self._header = header
        self._file = open(self.path, "a", encoding="utf-8")
        if self._header is not None and self._file.tell() == 0:
            self._file.write(self._header_line())
            self._sync()

    def _header_line(self) -> str:
        return json.dumps({"event": HEADER, **self._header()}, default=_plain) + "\n"

    def append(self, event: Event) -> None:
        """Write one event; it is in the file when this returns."""
        self._file.write(_encode(event))
        self._sync()

    def restart(self, events: Iterable[Event] = ()) -> None:
        """Empty the journal and write ``events`` (called once a snapshot holds the rest)."""
        self._file.close()
        self._file = open(self.path, "w", encoding="utf-8")
        if self._header is not None:
            self._file.write(self._header_line())
        self._file.writelines(_encode(e) for e in events)
        self._sync()

    def _sync(self) -> None:
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """Release the file."""
        self._file.close()


#: the fields every event of a kind must hold, and their types
_FIELDS: dict[type, dict[str, type | tuple[type, ...]]] = {
    TrialRecord: {"trial": int, "seq": int, "status": str, "params": dict, "attempts": int},
    ReportRecord: {"trial": int, "seq": int, "step": (int, float), "values": dict},
    TrialStarted: {"trial": int, "seq": int},
}


def _check(event: Event) -> Event:
    """``event``, or ``ValueError`` when a field has a type no daskhpo writes (a crafted line)."""
    for name, kind in _FIELDS.get(type(event), {}).items():
        value = getattr(event, name)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ValueError(f"field {name!r} is {type(value).__name__} {value!r:.60}")
    if isinstance(event, TrialRecord):
        for name in ("objective", "last_step", "submitted", "started", "ended"):
            value = getattr(event, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"field {name!r} is {type(value).__name__}, not a number")
        for name in ("worker", "gpu", "error"):
            if getattr(event, name) is not None and not isinstance(getattr(event, name), str):
                raise ValueError(f"field {name!r} is not a string")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in event.metrics.values()):
            raise ValueError("a metric is not a number")
    if isinstance(event, ReportRecord) and not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in event.values.values()):
        raise ValueError("a reported value is not a number")
    return event


def _decode(line: bytes | str, where: str) -> Event | None:
    """One journal line as its typed event (``None`` for the header); ``CorruptStorage``
    (a ``ValueError`` too) naming ``where`` if it is neither."""
    try:
        data = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError(f"a JSON {type(data).__name__}, not an event")
        if data.get("event") == HEADER:
            return None
        return _check(event_from_json(data))
    except (*PARSE_ERRORS, UnicodeDecodeError) as exc:
        raise CorruptStorage(where, f"{type(exc).__name__}: {exc}", advice=_ADVICE) from None


_ADVICE = ("A journal line that is not the last is damaged: the lines after it are events too. "
           "Restore the journal from a backup, or repair or remove that line by hand (a copy first).")


def read_journal(path: str | os.PathLike) -> list[Event]:
    """Every event in the journal of ``path``, in file order.

    A torn last line (a crash while it was written) is skipped with a warning; a corrupt
    line before the last raises, since events after it would then be replayed out of
    context.

    Raises
    ------
    CorruptStorage
        (A ``ValueError`` too) naming the file and the line, for a corrupt line that is
        not the last.
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
            event = _decode(line, f"{name}: line {n + 1}")
        except CorruptStorage:
            if n != len(lines) - 1:
                raise
            logger.warning("%s: ignoring a torn last line", name)
            continue
        if event is not None:
            events.append(event)
    return events


def journal_header(path: str | os.PathLike) -> dict[str, Any] | None:
    """The header of the journal of ``path`` (``space`` and ``attrs``), or ``None``.

    ``None`` when there is no journal, it is empty or it was written before headers.

    Raises
    ------
    CorruptStorage
        For a header that is not what daskhpo writes.
    """
    name = journal_path(path)
    try:
        with open(name, "rb") as fh:
            first = fh.readline()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(first)
    except (*PARSE_ERRORS, UnicodeDecodeError):
        return None  # an event line (or a torn one): a journal without a header
    if not isinstance(data, dict) or data.get("event") != HEADER:
        return None
    if not isinstance(data.get("space"), str) or not isinstance(data.get("attrs"), dict):
        raise CorruptStorage(f"{name}: line 1", "a header without the space or attrs", advice=_ADVICE)
    return data


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
                event = _decode(line, self.path)
            except CorruptStorage as exc:
                logger.warning("skipping a line: %s", exc.reason)
                continue
            if event is not None:
                events.append(event)
        return events
