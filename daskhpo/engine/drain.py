"""A graceful stop of the loop: *drain* it, from another thread or a signal handler.

Draining a running :class:`~daskhpo.engine.Engine` means: submit nothing more (no new
trial, no retry), keep receiving and recording what the trials in flight send for up to
``grace`` seconds (of the executor's clock), then give up the ones still running (they
are cancelled and **not recorded**: a resumed search runs them again) and return.  The
caller (the experiment) then writes the history and releases the storage, as after any
run.  A drain is not an error: :meth:`Engine.run` returns normally and says why in
:attr:`Engine.drained`.

Two ways to ask:

* :meth:`Engine.drain` on one engine (from any thread);
* :func:`request_drain` for the whole process: every engine running now drains, and every
  engine started later drains at once (it submits nothing), until :func:`clear_drain`.
  This is what a signal handler wants (see :func:`install_signal_handlers`): the signal may
  arrive before the search started (while a cluster starts), during it, or between two
  searches of one script.

Both are safe to call from a signal handler: they take no lock; they only append to a
list and put a wake-up event into the executor's queue
(:class:`queue.SimpleQueue.put` is reentrant), so the loop looks at the request at once
instead of at its next event.

Nothing here knows about Slurm: the Slurm driver job (:mod:`daskhpo.integrations.driver`) installs the
handlers, and a test or any other tool may call :func:`request_drain` directly.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["DrainRequest", "request_drain", "drain_requested", "clear_drain", "install_signal_handlers"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DrainRequest:
    """Why and how patiently a loop is asked to stop.

    Attributes
    ----------
    reason : str
        Shown in logs and recorded in the history's driver sessions (e.g. ``"SIGUSR1"``).
    grace : float
        Seconds (of the executor's clock, from when the loop sees the request) that trials
        in flight get to finish; the rest are cancelled.  ``0``: cancel them at once.
    when : float
        ``time.time()`` of the request.
    quiet : bool
        The caller tells the user itself (Ctrl-C: :mod:`daskhpo.experiment.interrupt`):
        the drain is logged at ``INFO``, not ``WARNING``.
    """

    reason: str
    grace: float
    when: float
    quiet: bool = False


class _Drainable(Protocol):
    def drain(self, grace: float = 0.0, reason: str = "drain requested", *, quiet: bool = False) -> None: ...


#: the process-wide request (sticky until clear_drain)
_REQUEST: DrainRequest | None = None
#: engines whose run() is in progress, by id (a plain dict: iterating a copy of its values
#: is safe from a signal handler, which runs between two bytecodes of the main thread)
_RUNNING: dict[int, _Drainable] = {}


def check_grace(grace: float) -> float:
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not grace >= 0:
        raise ValueError(f"grace must be non-negative seconds, got {grace!r}")
    return float(grace)


def request_drain(reason: str = "drain requested", grace: float = 0.0) -> DrainRequest:
    """Drain every engine of this process, now and until :func:`clear_drain`.

    Parameters
    ----------
    reason : str
        Why (logged, and recorded as the end of the driver session: ``"drained: <reason>"``).
    grace : float, default 0
        Seconds the trials in flight get to finish (see :class:`DrainRequest`).  A later
        request with a shorter grace shortens it (a second signal).

    Returns
    -------
    DrainRequest
        The request now in force.
    """
    global _REQUEST
    request = DrainRequest(str(reason), check_grace(grace), time.time())
    if _REQUEST is None or request.grace < _REQUEST.grace:
        _REQUEST = request
    for engine in list(_RUNNING.values()):
        engine.drain(request.grace, request.reason)
    return _REQUEST


def drain_requested() -> DrainRequest | None:
    """The process-wide drain request in force.

    Returns
    -------
    DrainRequest or None
        Its reason, grace and time, or ``None`` when no drain was requested (or it was
        cleared with :func:`clear_drain`).
    """
    return _REQUEST


def clear_drain() -> None:
    """Forget the process-wide request: engines started from now on run normally."""
    global _REQUEST
    _REQUEST = None


def register(engine: _Drainable) -> None:
    _RUNNING[id(engine)] = engine


def unregister(engine: _Drainable) -> None:
    _RUNNING.pop(id(engine), None)


def install_signal_handlers(graces: Mapping[int, float]) -> Callable[[], None]:
    """Make each signal in ``graces`` drain the process, with that grace.

    Must be called from the main thread (Python runs signal handlers there).  A handler
    only calls :func:`request_drain`; the loop does the rest on its own thread.

    Parameters
    ----------
    graces : mapping of signal number to seconds
        E.g. ``{signal.SIGUSR1: 120, signal.SIGTERM: 0}``: the walltime warning drains
        patiently, the termination itself at once.

    Returns
    -------
    callable
        Restores the handlers that were there before.
    """
    previous: dict[int, Any] = {}
    for signum, grace in graces.items():
        grace = check_grace(grace)
        name = signal.Signals(signum).name

        def handler(received: int, frame: Any, grace: float = grace, name: str = name) -> None:
            request_drain(name, grace)

        previous[signum] = signal.signal(signum, handler)

    def restore() -> None:
        for signum, old in previous.items():
            signal.signal(signum, old)

    return restore
