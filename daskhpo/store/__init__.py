"""Where an experiment's events live.

* :mod:`~daskhpo.store.base`: the :class:`Storage` interface the experiment writes through,
  with two implementations, :class:`MemoryStorage` and :class:`NetCDFStorage` (netCDF-4
  snapshot + journal + writer lock + driver sessions);
* :mod:`~daskhpo.store.history`: the history in memory, its dataset and its snapshots;
* :mod:`~daskhpo.store.journal`: the ordered log of events between snapshots;
* :mod:`~daskhpo.store.lock`: one writer per storage path;
* :mod:`~daskhpo.store.checkpoints`, :mod:`~daskhpo.store.sessions`,
  :mod:`~daskhpo.store.errors`.

The store knows the typed records (:mod:`daskhpo.records`) and the space, never the
optimizers, the engine or the experiment.
"""

import os

from .base import Storage, Stored
from .checkpoints import CheckpointStore
from .errors import CorruptStorage
from .history import History, load_history, read_history, read_snapshot
from .lock import StorageLock, StorageLocked
from .memory import MemoryStorage
from .netcdf import NetCDFStorage

__all__ = [
    "Storage", "Stored", "open_storage", "MemoryStorage", "NetCDFStorage", "History", "load_history",
    "read_history", "read_snapshot", "CheckpointStore", "StorageLock", "StorageLocked", "CorruptStorage",
]


def open_storage(path: str | os.PathLike | None, *, snapshot_interval: float = 30.0,
                 fsync: bool = False) -> Storage:
    """The storage for ``path``: in memory for ``None``, else netCDF + journal.

    Parameters
    ----------
    path : path or None
        The netCDF file of the history.
    snapshot_interval, fsync
        As for :func:`daskhpo.build_experiment`.
    """
    if path is None:
        return MemoryStorage()
    return NetCDFStorage(path, snapshot_interval=snapshot_interval, fsync=fsync)
