"""One writer per storage path.

A history file is written by exactly one driver process.  :class:`StorageLock` takes an
operating-system lock (``flock``, through the :mod:`filelock` library) on ``<path>.lock``;
the kernel releases it when the process ends, however it ends (``SIGKILL`` included), so a
crashed run never blocks its own resume.  Who holds the lock (host, pid, since when, the
command) is written after acquiring to the sidecar ``<path>.lock.json``: the lock file
itself only carries the kernel lock.

A second process, or a second :class:`StorageLock` on the same path in the same process,
gets :class:`StorageLocked`, a :class:`RuntimeError` naming the storage path and the
holder.

Notes
-----
* The sidecar may outlive its holder (``SIGKILL``); it is informative only and is
  overwritten by the next holder.  The kernel lock alone decides.
* A child made with ``fork()`` (without ``exec``) shares the lock with its parent; the lock
  is released only when both have ended.  Processes started with ``subprocess`` or the
  ``spawn`` / ``forkserver`` methods do not inherit it.
* On network file systems the guarantee is the file system's: see the README (NFSv4 and
  Lustre mounted with ``-o flock`` give a cluster-wide lock; Lustre with ``localflock`` or
  NFS with ``nolock`` only lock within one host).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import socket
import sys
import time
from typing import Any

import filelock

__all__ = ["StorageLock", "StorageLocked"]

logger = logging.getLogger(__name__)


class StorageLocked(RuntimeError):
    """The storage path is already held by another writer.

    Attributes
    ----------
    path : str
        The storage path.
    holder : dict or None
        What the holder wrote about itself (``host``, ``pid``, ``since``, ``command``,
        ``user``), or ``None`` when it could not be read.
    """

    def __init__(self, path: str, holder: dict[str, Any] | None) -> None:
        self.path = path
        self.holder = holder
        super().__init__(self._message())

    def _message(self) -> str:
        if self.holder:
            h = self.holder
            who = (
                f"host {h.get('host', '?')!s}, pid {h.get('pid', '?')!s}, since {h.get('since', '?')!s}"
                f" (command: {h.get('command', '?')!s})"
            )
            if h.get("host") == socket.gethostname() and h.get("pid") == os.getpid():
                who += " -- this very process: close or release the other writer on this path first"
        else:
            who = "a process that has not (yet) recorded who it is"
        return (
            f"storage {self.path!r} is already being written by another process: {who}. "
            "Only one driver may write a storage path at a time: wait for it to finish, stop it, "
            "or use another storage path. A process that was killed holds no lock; if that holder "
            "is gone and this persists, the file system does not release locks of dead processes "
            "(see the README on NFS/Lustre)."
        )

    def __reduce__(self):  # keep the exception picklable (it may cross process boundaries)
        return (type(self), (self.path, self.holder))


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class StorageLock:
    """An exclusive, non-blocking lock on a storage path.

    Parameters
    ----------
    path : str or os.PathLike
        The storage path (the history file); the lock is ``<path>.lock`` and the holder's
        description ``<path>.lock.json``.
    timeout : float, default 0
        Seconds to wait for a held lock before raising :class:`StorageLocked` (0: at once).

    Examples
    --------
    >>> with StorageLock("run.nc"):         # doctest: +SKIP
    ...     experiment.workon(...)
    """

    def __init__(self, path: str | os.PathLike, *, timeout: float = 0.0) -> None:
        self.path = os.fspath(path)
        self.lock_path = f"{self.path}.lock"
        self.info_path = f"{self.path}.lock.json"
        self.timeout = float(timeout)
        # thread_local=False: the experiment may release from another thread than it acquired.
        self._lock = filelock.FileLock(self.lock_path, timeout=self.timeout, thread_local=False)
        self._held = False
        self._token = f"{os.getpid()}-{id(self)}-{time.monotonic_ns()}"

    # -- the lock ------------------------------------------------------------------------
    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._held

    def acquire(self) -> StorageLock:
        """Take the lock, or raise :class:`StorageLocked` naming the holder.

        Acquiring a lock this object already holds does nothing.
        """
        if self._held:
            return self
        directory = os.path.dirname(os.path.abspath(self.lock_path))
        os.makedirs(directory, exist_ok=True)
        try:
            self._lock.acquire(timeout=self.timeout)
        except filelock.Timeout:
            raise StorageLocked(self.path, self._read_holder_patiently()) from None
        self._held = True
        try:
            self._write_holder()
        except BaseException:
            self.release()
            raise
        logger.debug("storage lock %s taken by pid %d", self.lock_path, os.getpid())
        return self

    def release(self) -> None:
        """Give the lock back (does nothing when not held)."""
        if not self._held:
            return
        try:
            info = self.holder()
            if info is not None and info.get("token") == self._token:
                os.unlink(self.info_path)
        except OSError:  # pragma: no cover - the sidecar is informative only
            pass
        finally:
            self._held = False
            self._lock.release(force=True)
        logger.debug("storage lock %s released", self.lock_path)

    def __enter__(self) -> StorageLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # pragma: no cover - a safety net; release() is the way
        try:
            self.release()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<StorageLock {self.path!r} {'held' if self._held else 'free'}>"

    # -- who holds it ----------------------------------------------------------------------
    def holder(self) -> dict[str, Any] | None:
        """The holder's description as written in the sidecar, or ``None``.

        The sidecar may describe a holder that has died: only :meth:`acquire` says whether
        the lock is free.
        """
        try:
            with open(self.info_path, encoding="utf-8") as fh:
                info = json.load(fh)
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def _read_holder_patiently(self) -> dict[str, Any] | None:
        # The holder writes its sidecar just after taking the lock; a contender arriving in
        # between reads nothing, or a dead predecessor's sidecar.  Wait a moment for it.
        deadline = time.monotonic() + 1.0
        while True:
            info = self.holder()
            if info is not None and not _is_dead_here(info):
                return info
            if time.monotonic() >= deadline:
                return info
            time.sleep(0.05)

    def _write_holder(self) -> None:
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": _now(),
            "command": " ".join(sys.argv) or sys.executable,
            "user": _user(),
            "token": self._token,
        }
        tmp = f"{self.info_path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(info, fh)
        os.replace(tmp, self.info_path)


def _user() -> str:
    try:
        import getpass

        return getpass.getuser()
    except Exception:  # pragma: no cover - no user name in some containers
        return "?"


def _is_dead_here(info: dict[str, Any]) -> bool:
    """Whether ``info`` describes a process on this host that no longer exists."""
    if info.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(info["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, TypeError, ValueError, OverflowError):
        return False
    return False
