"""Reading stored files, with an error that says which file, what is wrong and what to do.

Every parse of a storage file's content (the snapshot, its attrs, the journal's lines,
a checkpoint) ends in :class:`CorruptStorage` when the content is not what daskhpo wrote,
never in a raw ``SyntaxError``, ``JSONDecodeError`` or ``KeyError``.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os

import xarray as xr

__all__ = ["CorruptStorage", "open_snapshot", "set_aside"]

logger = logging.getLogger(__name__)

#: the netCDF engine of every snapshot (netCDF-4: int64, strings, datetimes)
ENGINE = "h5netcdf"
#: what parsing a crafted or damaged file's content can raise (turned into CorruptStorage)
PARSE_ERRORS = (ValueError, SyntaxError, KeyError, TypeError, IndexError, AttributeError, OverflowError,
                RecursionError)


class CorruptStorage(OSError, ValueError):
    """A storage file exists but cannot be read (truncated, overwritten, not what daskhpo wrote).

    An ``OSError``, and a ``ValueError`` too (what a corrupt journal line raised before).

    Attributes
    ----------
    path : str
        The unreadable file.
    journal : str or None
        The journal beside it, when there is one.
    advice : str or None
        What to do, when the default (for a snapshot) does not fit.
    """

    def __init__(self, path: str, reason: str, journal: str | None = None, advice: str | None = None) -> None:
        self.path = path
        self.reason = reason
        self.journal = journal
        self.advice = advice
        super().__init__(self._message())

    def _message(self) -> str:
        if self.advice is not None:
            return f"storage file {self.path!r} is unreadable or corrupt ({self.reason}); nothing was changed. {self.advice}"
        if self.journal is not None:
            beside = (
                f"The journal beside it, {self.journal!r}, holds what was recorded since that snapshot "
                "was written and was not changed."
            )
            recover = (
                f"; or move {self.path!r} aside (keeping the journal where it is): build_experiment and "
                "load_experiment then recover the trials of the journal, those only in the damaged snapshot "
                "being lost"
            )
        else:
            beside, recover = "There is no journal beside it.", ""
        return (
            f"storage file {self.path!r} is unreadable, truncated or corrupt ({self.reason}); "
            f"nothing was changed. {beside} To go on: move {self.path!r} aside and restore it from a "
            f"backup (or a copy taken before the failure), keeping its journal next to it{recover}; or start "
            "a new experiment on another storage path."
        )

    def __reduce__(self):
        return (type(self), (self.path, self.reason, self.journal, self.advice))


def set_aside(path: str | os.PathLike, why: str) -> str:
    """Rename ``path`` to ``<path>.set-aside-<UTC time>`` (never removed) and log it.

    Returns
    -------
    str
        The new name.
    """
    path = os.fspath(path)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target, n = f"{path}.set-aside-{stamp}", 1
    while os.path.exists(target):
        n += 1
        target = f"{path}.set-aside-{stamp}-{n}"
    os.rename(path, target)
    logger.warning("%s: set aside as %s (%s); nothing was deleted", path, target, why)
    return target


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
    journal = f"{path}.journal" if journal is None else os.fspath(journal)  # (journal.journal_path)
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
