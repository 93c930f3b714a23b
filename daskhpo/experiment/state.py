"""What an experiment keeps across runs and shares with the run under way.

Both are touched from several threads (the loop, the model thread, a reader's thread), so
each keeps its own lock; neither is stored: they live as long as the experiment object.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ..records import TrialRecord
from ..store import History

__all__ = ["Enqueued", "Subscribers"]

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
    """Configurations to run next, in order (see :meth:`daskhpo.Experiment.enqueue`)."""

    def __init__(self, items: Iterable[dict[str, Any]] = ()) -> None:
        # the model thread and fills on the loop's thread take from it
        self._lock = threading.Lock()
        self._items = [dict(p) for p in items]

    def __getstate__(self) -> dict[str, Any]:
        return {"items": self.items()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["items"])

    def put(self, params: dict[str, Any]) -> None:
        """Run ``params`` after those enqueued before."""
        with self._lock:
            self._items.append(dict(params))

    def take(self) -> dict[str, Any] | None:
        """The next configuration, removed from the queue; ``None`` when it is empty."""
        with self._lock:
            return self._items.pop(0) if self._items else None

    def items(self) -> list[dict[str, Any]]:
        """Copies of the waiting configurations, in order."""
        with self._lock:
            return [dict(p) for p in self._items]

    def __len__(self) -> int:
        return len(self._items)
