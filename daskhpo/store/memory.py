"""An experiment kept in this process's memory only: no file, no lock, no session."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..records import Event
from ..space import Space
from .base import Stored
from .checkpoints import CheckpointStore
from .history import History

__all__ = ["MemoryStorage"]


class MemoryStorage:
    """A :class:`~daskhpo.store.base.Storage` in memory.

    Parameters
    ----------
    history : History, optional
        A history to hold from the start (a loaded or unpickled copy); default: one made by
        :meth:`open`.
    checkpoints : CheckpointStore, optional
        Default: checkpoints in memory (or in the files of ``history.path``).
    """

    def __init__(self, history: History | None = None, checkpoints: CheckpointStore | None = None) -> None:
        #: the history (``None`` until :meth:`open`)
        self.history = history
        if checkpoints is None and history is not None:
            checkpoints = CheckpointStore(history.path)
        #: the checkpoints (``None`` until :meth:`open`)
        self.checkpoints = checkpoints

    @property
    def path(self) -> str | None:
        """``None``; a copy of a stored history keeps that history's path, for reference."""
        return None if self.history is None else self.history.path

    @property
    def kept(self) -> str:
        return "kept in memory (experiment.history)"

    @property
    def superseded(self) -> bool:
        return False

    def claim(self) -> None:
        """Nothing to claim: no one else sees this memory."""

    def read(self) -> Stored | None:
        """Nothing is stored before :meth:`open`."""
        return None

    def open(
        self,
        space: Space,
        attrs: Mapping[str, Any],
        events: Iterable[Event] = (),
        *,
        stored_attrs: Mapping[str, Any] | None = None,
        keep_checkpoints: str | int = "all",
    ) -> History:
        self.history = History(space, attrs, None, events)
        self.checkpoints = CheckpointStore(None, keep=keep_checkpoints)
        return self.history

    def snapshot(self) -> None:
        """Nothing to write."""

    def end_session(self, reason: str) -> None:
        """Sessions are a stored experiment's record; nothing to do in memory."""

    def close(self) -> None:
        if self.history is not None:
            self.history.close()  # a copy with a journal (History.close) still writes the rest

    def __repr__(self) -> str:
        return "<MemoryStorage>"
