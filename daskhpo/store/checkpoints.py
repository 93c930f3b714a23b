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

Checkpoint files are pickles, unpickled when read: a crafted one runs code on the
client.  Load only storage you trust (as PyTorch says of ``torch.load``).

Retention (``keep=``): ``"all"`` (the default) deletes nothing; an int ``N`` keeps the
checkpoints of the ``N`` most recent trials (highest trial ids: stable across a resume);
``"best"`` keeps those of the ``n_best`` trials with the lowest objective.  Whatever the
policy, :meth:`CheckpointStore.retain` never deletes a checkpoint named as *needed*: one
that a running trial or a future suggestion may start from.  It deletes only when told
what is needed; until then, nothing.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from .errors import CorruptStorage

__all__ = ["CheckpointStore"]

logger = logging.getLogger(__name__)

_FILE = re.compile(r"^trial-(-?\d+)\.pkl$")
_ADVICE = ("Move it aside: the trials that would start from this checkpoint then start from scratch "
           "(or restore it from a backup).")


def _check_keep(keep: Any, n_best: Any) -> None:
    if isinstance(n_best, bool) or not isinstance(n_best, int) or n_best < 1:
        raise ValueError(f"keep_checkpoints: n_best must be a positive integer, got {n_best!r}")
    if keep in ("all", "best"):
        return
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise ValueError(
            f'keep_checkpoints must be "all", "best" or a non-negative integer (how many of the '
            f"most recent trials keep theirs), got {keep!r}"
        )


class CheckpointStore:
    """Checkpoints by trial id, in memory or in files next to the history.

    Parameters
    ----------
    path : str, optional
        The history's storage path; files go to ``<path>.checkpoints/``.
    keep : {"all", "best"} or int, default "all"
        Which checkpoints :meth:`retain` keeps besides the needed ones: all of them; those
        of the ``n_best`` best trials (lowest objective); or those of the ``keep`` most
        recent trials (highest trial ids; ``0``: only the needed ones).
    n_best : int, default 1
        How many trials ``keep="best"`` keeps.

    Raises
    ------
    ValueError
        For a ``keep`` or ``n_best`` that is not one of the above.
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        keep: Literal["all", "best"] | int = "all",
        *,
        n_best: int = 1,
    ) -> None:
        _check_keep(keep, n_best)
        self.directory = None if path is None else f"{os.fspath(path)}.checkpoints"
        self.keep = keep
        self.n_best = n_best
        self._memory: dict[int, tuple[str, Any]] = {}
        self._objectives: dict[int, float] = {}

    def _file(self, trial_id: int) -> str:
        return os.path.join(self.directory, f"trial-{int(trial_id)}.pkl")

    def put(self, trial_id: int, stored: tuple[str, Any] | None, *, objective: float | None = None) -> None:
        """Keep the checkpoint of a trial (``None``: nothing to keep).

        Parameters
        ----------
        trial_id : int
        stored : tuple or None
            The checkpoint as the trial runner returns it.
        objective : float, optional
            The trial's objective, for ``keep="best"`` (it may also be given to
            :meth:`retain`).
        """
        if stored is None:
            return
        if objective is not None:
            self._objectives[int(trial_id)] = float(objective)
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
        name = self._file(trial_id)
        try:
            with open(name, "rb") as fh:
                stored = pickle.load(fh)  # (a pickle runs code: load only storage you trust)
        except FileNotFoundError:
            return None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError) as exc:
            raise CorruptStorage(name, f"{type(exc).__name__}: {exc}", advice=_ADVICE) from exc
        if not (isinstance(stored, (tuple, list)) and len(stored) == 2 and isinstance(stored[0], str)):
            raise CorruptStorage(name, f"a pickled {type(stored).__name__}, not a checkpoint", advice=_ADVICE)
        return stored

    def __contains__(self, trial_id: int) -> bool:
        if self.directory is None:
            return int(trial_id) in self._memory
        return os.path.exists(self._file(trial_id))

    def ids(self) -> list[int]:
        """The trial ids that have a stored checkpoint, in increasing order."""
        if self.directory is None:
            return sorted(self._memory)
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for m in map(_FILE.match, names) if m)

    def __len__(self) -> int:
        return len(self.ids())

    def discard(self, trial_id: int) -> None:
        """Delete a trial's checkpoint (nothing when there is none)."""
        trial_id = int(trial_id)
        self._objectives.pop(trial_id, None)
        if self.directory is None:
            self._memory.pop(trial_id, None)
            return
        try:
            os.unlink(self._file(trial_id))
        except FileNotFoundError:
            pass

    def retain(
        self,
        needed: Iterable[int] | None,
        objectives: Mapping[int, float] | None = None,
    ) -> list[int]:
        """Delete the checkpoints that are neither needed nor kept by the policy.

        Call it after a finished trial was stored and its optimizer told of it.

        Parameters
        ----------
        needed : iterable of int or None
            Trial ids whose checkpoints a running trial or a future suggestion may start
            from (the running trials' ``checkpoint`` and every checkpoint the optimizer may
            still refer to).  These are never deleted.  ``None`` means *unknown*: nothing is
            deleted.
        objectives : mapping of int to float, optional
            Objectives by trial id, for ``keep="best"`` (added to those given to :meth:`put`;
            after a resume, the history's).  A checkpoint without a finite objective is
            never among the best.

        Returns
        -------
        list of int
            The trial ids whose checkpoints were deleted.
        """
        if objectives:
            self._objectives.update({int(k): float(v) for k, v in objectives.items()})
        if self.keep == "all" or needed is None:
            return []
        stored = self.ids()
        kept = {int(i) for i in needed}
        if self.keep == "best":
            scored = [(self._objectives[i], i) for i in stored if math.isfinite(self._objectives.get(i, math.nan))]
            kept.update(i for _, i in sorted(scored)[: self.n_best])
        elif self.keep > 0:
            kept.update(stored[-self.keep :])
        deleted = []
        for trial_id in (i for i in stored if i not in kept):
            try:
                self.discard(trial_id)
            except OSError as exc:  # a file system hiccup must not stop the experiment
                logger.warning("could not delete the checkpoint of trial %d: %s", trial_id, exc)
            else:
                deleted.append(trial_id)
        if deleted:
            logger.debug("deleted the checkpoints of trials %s (keep=%r)", deleted, self.keep)
        return deleted
