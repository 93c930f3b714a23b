"""What an experiment keeps across runs and shares with the run under way.

Both are touched from several threads (the loop, the model thread, a reader's thread), so
each keeps its own lock; neither is stored: they live as long as the experiment object.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ..records import TrialRecord
from ..space import Space
from ..store import History, MemoryStorage

__all__ = ["Enqueued", "Subscribers", "dump_queue", "load_queue", "stored_queue"]

logger = logging.getLogger(__name__)

Callback = Callable[[TrialRecord], None]


class Subscribers:
    """The callbacks that hear of each finished trial (see :meth:`daskhpo.Experiment.subscribe`).

    A record is appended to the history and the callbacks to call are read under one
    lock, so that a subscriber that asks for a replay misses no trial and gets none twice.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: list[Callback] = []

    def __getstate__(self) -> dict[str, Any]:
        return {}  # callbacks belong to this process (a pickled experiment has none)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()

    @property
    def callbacks(self) -> list[Callback]:
        """The callbacks subscribed now."""
        return list(self._callbacks)

    def add(self, callback: Callback, replay: Callable[[], Iterable[TrialRecord]] | None = None) -> Callable[[], None]:
        """Subscribe ``callback``, first calling it with ``replay()``'s records; returns the unsubscriber."""
        with self._lock:
            if replay is not None:
                for record in replay():
                    self.call(callback, record)
            self._callbacks = [*self._callbacks, callback]

        def unsubscribe() -> None:
            with self._lock:
                self._callbacks = [s for s in self._callbacks if s is not callback]

        return unsubscribe

    def append(self, history: History, record: TrialRecord) -> tuple[TrialRecord, list[Callback]]:
        """Append ``record`` to ``history``: the stored record and the callbacks to tell of it."""
        with self._lock:
            return history.append(record), self._callbacks

    @staticmethod
    def call(callback: Callback, record: TrialRecord) -> None:
        """Call one callback; what it raises is logged, never stops the search."""
        try:
            callback(record)
        except Exception:
            logger.exception("subscriber %r failed", callback)


class Enqueued:
    """Configurations to run next, in order (see :meth:`daskhpo.Experiment.enqueue`).

    Each entry is ``{"params": {...}, "after": id}``: ``after`` is the lowest trial id that
    may run it (the trials stored before it was enqueued cannot have).  An entry taken by
    a trial stays *taken* until that trial finishes: :meth:`stored` (what goes into the
    history's attr ``enqueued``) lists the taken entries first, so a process that dies
    before the trial finishes runs the entry again on resume, once (see
    :func:`daskhpo.experiment.resume.unconsumed`).

    Parameters
    ----------
    items : iterable of dict
        Entries (``params`` and ``after``), or bare configurations (``after`` 0).
    on_change : callable, optional
        Called with :meth:`stored` after each change (under the queue's lock).
    """

    def __init__(self, items: Iterable[dict[str, Any]] = (),
                 on_change: Callable[[list[dict[str, Any]]], None] | None = None) -> None:
        # the model thread and fills on the loop's thread take from it
        self._lock = threading.Lock()
        self._items = [_entry(p) for p in items]
        #: trial id -> the entry it took, until the trial finishes
        self._taken: dict[int, dict[str, Any]] = {}
        self._on_change = on_change

    def __getstate__(self) -> dict[str, Any]:
        return {"items": self.stored()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["items"])

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self._stored())

    def put(self, params: dict[str, Any], after: int = 0) -> None:
        """Run ``params`` after those enqueued before, in a trial ``after`` or later."""
        with self._lock:
            self._items.append({"params": dict(params), "after": int(after)})
            self._changed()

    def take(self, trial_id: int | None = None) -> dict[str, Any] | None:
        """The next configuration, removed from the queue; ``None`` when it is empty.

        With ``trial_id``, the entry is kept as taken by that trial until :meth:`done`.
        """
        with self._lock:
            if not self._items:
                return None
            entry = self._items.pop(0)
            if trial_id is not None:
                self._taken[trial_id] = entry
            self._changed()
            return dict(entry["params"])

    def done(self, trial_id: int) -> None:
        """The trial that took an entry finished: the entry is consumed."""
        with self._lock:
            if self._taken.pop(trial_id, None) is not None:
                self._changed()

    def requeue(self) -> None:
        """Put the entries taken by trials that never finished back first (the run ended)."""
        with self._lock:
            if self._taken:
                self._items[:0] = [self._taken[t] for t in sorted(self._taken)]
                self._taken.clear()
                self._changed()

    def items(self) -> list[dict[str, Any]]:
        """Copies of the waiting configurations, in order."""
        with self._lock:
            return [dict(e["params"]) for e in self._items]

    def stored(self) -> list[dict[str, Any]]:
        """The entries to store: those taken by unfinished trials, then those waiting."""
        with self._lock:
            return self._stored()

    def _stored(self) -> list[dict[str, Any]]:
        taken = [self._taken[t] for t in sorted(self._taken)]
        return [{"params": dict(e["params"]), "after": e["after"]} for e in [*taken, *self._items]]

    def __len__(self) -> int:
        return len(self._items)


def _entry(item: dict[str, Any]) -> dict[str, Any]:
    """An entry from a stored one or a bare configuration (pickled before entries existed)."""
    if set(item) == {"params", "after"} and isinstance(item["params"], dict):
        return {"params": dict(item["params"]), "after": int(item["after"])}
    return {"params": dict(item), "after": 0}


def dump_queue(entries: list[dict[str, Any]]) -> str:
    """The attr ``enqueued``: the entries as JSON (NumPy scalars as Python numbers)."""
    return json.dumps(entries, default=lambda v: v.item() if hasattr(v, "item") else str(v))


def load_queue(raw: str | None) -> list[dict[str, Any]]:
    """The entries of the attr ``enqueued`` (none for an absent or unreadable one, logged)."""
    if not raw:
        return []
    try:
        entries = json.loads(raw)
        return [_entry(e) for e in entries]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        logger.warning("the stored queue of enqueued configurations cannot be read (%s): it is left out", exc)
        return []


def stored_queue(history: History, space: Space, *, writing: bool) -> Enqueued:
    """The queue of :meth:`daskhpo.Experiment.enqueue`: the one stored in ``history``'s attr
    ``enqueued``, kept there as it changes (written with the next snapshot); for a new
    experiment (``writing``, nothing stored), the space's defaults."""

    def store(entries: list[dict[str, Any]]) -> None:
        history.attrs["enqueued"] = dump_queue(entries)

    stored = history.attrs.get("enqueued")
    queue = Enqueued(load_queue(stored), on_change=store)
    defaults = space.defaults()
    if writing and stored is None and defaults is not None and history.next_trial_id == 0:
        queue.put(defaults)
    return queue


def state_of_an_older_pickle(state: dict[str, Any]) -> dict[str, Any]:
    """An :class:`~daskhpo.Experiment`'s pickled ``__dict__`` in today's shape.

    Pickled before :mod:`daskhpo.store`, the history and checkpoints were fields of the
    experiment and the run's state lived on it too; later fields get their defaults.
    """
    state = dict(state)
    if "_storage" not in state:
        state["_storage"] = MemoryStorage(state.pop("_history"), state.pop("_checkpoints", None))
        queue = state.get("_queue") or []
        state["_queue"] = queue if isinstance(queue, Enqueued) else Enqueued(queue)
        state["_subscribers"] = Subscribers()
        for old in ("_publish_lock", "_ids_lock", "_lock", "_superseded", "_engine", "_model", "_running_from",
                    "_filling", "_run_times", "_incumbents"):
            state.pop(old, None)
    for name, default in (("_warm", []), ("_run", None), ("_on_run", {}), ("_resume", None)):
        state.setdefault(name, default)
    return state
