"""Where trials' checkpoints are kept, on the client.

A trial's last checkpoint (see :func:`daskhpo.report`) comes back once, with the trial's
result, and is kept here under the trial's id until a later trial starts from it
(an ASHA promotion, a PBT segment).

* With ``storage=`` it is written next to the history, one file per trial in the
  directory ``<storage>.checkpoints/`` (atomically: temporary file, ``fsync``,
  :func:`os.replace`), before the optimizer hears of the trial.  Memory then holds none,
  a resumed experiment finds them, and the history file stays small: checkpoints are
  opaque, possibly large, and have nothing to do in an analysis dataset.
* Without storage they are kept in the client's memory.
* A checkpoint given as a directory path is stored as that path only; the directory
  itself is the user's (it must be readable from the workers that resume it).
"""

from __future__ import annotations

import os
import pickle
from typing import Any

__all__ = ["CheckpointStore"]


class CheckpointStore:
    """Checkpoints by trial id, in memory or in files next to the history.

    Parameters
    ----------
    path : str, optional
        The history's storage path; files go to ``<path>.checkpoints/``.
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.directory = None if path is None else f"{os.fspath(path)}.checkpoints"
        self._memory: dict[int, tuple[str, Any]] = {}

    def _file(self, trial_id: int) -> str:
        return os.path.join(self.directory, f"trial-{int(trial_id)}.pkl")

    def put(self, trial_id: int, stored: tuple[str, Any] | None) -> None:
        """Keep the checkpoint of a trial (``None``: nothing to keep)."""
        if stored is None:
            return
        if self.directory is None:
            self._memory[int(trial_id)] = stored
            return
        os.makedirs(self.directory, exist_ok=True)
        target = self._file(trial_id)
        tmp = f"{target}.tmp-{os.getpid()}"
        with open(tmp, "wb") as fh:
            pickle.dump(stored, fh, protocol=pickle.HIGHEST_PROTOCOL)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)

    def get(self, trial_id: int | None) -> tuple[str, Any] | None:
        """The stored checkpoint of a trial, or ``None``."""
        if trial_id is None:
            return None
        if self.directory is None:
            return self._memory.get(int(trial_id))
        try:
            with open(self._file(trial_id), "rb") as fh:
                return pickle.load(fh)
        except FileNotFoundError:
            return None

    def __contains__(self, trial_id: int) -> bool:
        if self.directory is None:
            return int(trial_id) in self._memory
        return os.path.exists(self._file(trial_id))
