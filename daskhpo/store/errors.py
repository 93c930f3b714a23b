"""Reading a stored snapshot, with an error that says which file and what to do."""

from __future__ import annotations

import os

import xarray as xr

from .journal import journal_path

__all__ = ["CorruptStorage", "open_snapshot"]

#: the engine every snapshot is written with
#: the netCDF engine of every snapshot (netCDF-4: int64, strings, datetimes)
ENGINE = "h5netcdf"


class CorruptStorage(OSError):
    """A storage file exists but cannot be read (truncated, overwritten, not netCDF).

    Attributes
    ----------
    path : str
        The unreadable file.
    journal : str or None
        The journal beside it, when there is one.
    """

    def __init__(self, path: str, reason: str, journal: str | None = None) -> None:
        self.path = path
        self.reason = reason
        self.journal = journal
        super().__init__(self._message())

    def _message(self) -> str:
        if self.journal is not None:
            beside = (
                f"The journal beside it, {self.journal!r}, holds what was recorded since that snapshot "
                "was written and was not changed."
            )
        else:
            beside = "There is no journal beside it."
        return (
            f"storage file {self.path!r} is unreadable, truncated or corrupt ({self.reason}); "
            f"nothing was changed. {beside} To go on: move {self.path!r} aside and restore it from a "
            "backup (or a copy taken before the failure), keeping its journal next to it; or start a new "
            "experiment on another storage path."
        )

    def __reduce__(self):
        return (type(self), (self.path, self.reason, self.journal))


def open_snapshot(path: str | os.PathLike, *, journal: str | os.PathLike | None = None) -> xr.Dataset:
    """Load a netCDF snapshot into memory.

    Parameters
    ----------
    path : str or os.PathLike
        The snapshot (the storage path).
    journal : str or os.PathLike, optional
        The journal kept beside it, named in the error; by default ``<path>.journal``.

    Returns
    -------
    xarray.Dataset
        Loaded (the file is closed again).

    Raises
    ------
    FileNotFoundError
        When there is no file at ``path`` (a new experiment, not a corrupt one).
    CorruptStorage
        When the file exists but cannot be read as netCDF (truncated, garbage); it names
        the file, the journal beside it, and what to do.

    Notes
    -----
    Truncation is always detected.  Bytes flipped in the middle of the file are not
    always: in a trial of random flips, ~10% of damaged files loaded (with damaged data),
    and HDF5 itself hung or crashed on a few.  Only a checksum written with the snapshot
    would detect the former.
    """
    path = os.fspath(path)
    journal = journal_path(path) if journal is None else os.fspath(journal)
    try:
        return xr.load_dataset(path, engine=ENGINE)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        # HDF5 reports damage as OSError (truncation, bad signature), KeyError ("unable to
        # open object") or RuntimeError (bad ids), found by flipping bytes of a snapshot.
        if not os.path.exists(path):  # vanished between the checks: not corruption
            raise FileNotFoundError(f"no storage file at {path!r}") from exc
        size = os.path.getsize(path)
        reason = f"{type(exc).__name__}: {exc}; {size} bytes"
        raise CorruptStorage(path, reason, journal if os.path.exists(journal) else None) from exc
