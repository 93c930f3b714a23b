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

from .base import Storage, Stored, open_storage
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
