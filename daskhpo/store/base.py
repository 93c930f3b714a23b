"""The storage interface: what an experiment needs from wherever its events are kept.

An experiment writes through one :class:`Storage` for its whole life:

1. :meth:`Storage.claim` makes this object the storage's only writer (a no-op in memory);
2. :meth:`Storage.read` gives what is already stored there, if anything, to resume it;
3. :meth:`Storage.open` starts writing: it returns the :class:`~daskhpo.store.history.History`
   that every event goes through, and makes :attr:`Storage.checkpoints`;
4. while runs go on, :meth:`Storage.snapshot` and :meth:`Storage.end_session`;
5. :meth:`Storage.close` writes the rest and lets go.

Two implementations: :class:`~daskhpo.store.memory.MemoryStorage` (nothing leaves the
process) and :class:`~daskhpo.store.netcdf.NetCDFStorage` (a netCDF-4 snapshot, a journal,
the writer lock and the driver sessions).  :func:`daskhpo.store.open_storage` picks one
from a path or ``None``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

from ..records import Event, ReportRecord, TrialRecord
from ..space import Space
from .checkpoints import CheckpointStore
from .history import History

__all__ = ["Storage", "Stored"]


class Stored(NamedTuple):
    """An experiment as found in a storage: its space, attrs and events in their order."""

    space: Space
    attrs: dict[str, Any]
    events: list[TrialRecord | ReportRecord]


@runtime_checkable
class Storage(Protocol):
    """Where one experiment's events are kept (see the module's docstring for the order of calls)."""

    @property
    def path(self) -> str | None:
        """The storage path, or ``None`` for an experiment that lives in memory."""

    #: the history events go through (``None`` until :meth:`open`)
    history: History | None
    #: the trials' checkpoints (``None`` until :meth:`open`)
    checkpoints: CheckpointStore | None

    @property
    def kept(self) -> str:
        """Where the history is kept, as a message to the user says it (``"stored in x.nc"``)."""

    @property
    def superseded(self) -> bool:
        """Whether a later writer of the same storage took over from this one."""

    def claim(self) -> None:
        """Become the storage's only writer, before reading it (so what is read stays the truth)."""

    def read(self) -> Stored | None:
        """The experiment stored there, or ``None`` when there is none yet."""

    def open(
        self,
        space: Space,
        attrs: Mapping[str, Any],
        events: Iterable[Event] = (),
        *,
        stored_attrs: Mapping[str, Any] | None = None,
        keep_checkpoints: str | int = "all",
    ) -> History:
        """Start writing ``events`` and what follows; ``stored_attrs``: the attrs read before."""

    def snapshot(self) -> None:
        """Write the whole history where it is kept (nothing in memory)."""

    def end_session(self, reason: str) -> None:
        """Record why this process stopped writing for now (see :mod:`daskhpo.store.sessions`)."""

    def close(self) -> None:
        """Write the rest and stop writing; the history stays readable."""
