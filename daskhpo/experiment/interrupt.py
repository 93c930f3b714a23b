"""Ctrl-C during a search: a drain, one message, then the ``KeyboardInterrupt``.

A ``KeyboardInterrupt`` raised wherever the main thread happens to be (a history write, a
callback, the loop waiting for an event) printed the library's frames down to that point,
and the worker processes of a local cluster printed theirs (see
:mod:`daskhpo.engine.local_workers`).  While a run's engine loops on the main thread,
:class:`CtrlC` makes the first ``SIGINT`` a drain instead (:mod:`daskhpo.engine.drain`,
grace 0): nothing more is submitted, the trials in flight are cancelled and not recorded (a
resumed search runs them again), the history is saved, and the run ends as any run does.
:meth:`daskhpo.Experiment.run` then raises ``KeyboardInterrupt`` with one line that says
what is stored and how to resume, from the user's own call, as Python users expect (Optuna's
``study.optimize`` re-raises it too).  The process then ends as an interrupted Python
program does: status 130 in a shell.

A second Ctrl-C interrupts at once, with the full traceback (the way to see where a
search hangs).  So does one that comes while the engine is not in its loop (a cluster
starting, the wait for a first worker), or in a thread other than the main one, or when
the program installed a ``SIGINT`` handler of its own: those are left alone.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import TracebackType
from typing import Any

__all__ = ["CTRL_C", "CtrlC", "interrupted_message"]

logger = logging.getLogger(__name__)

#: the reason of a Ctrl-C drain (logs, and the session's end on disk is "interrupted")
CTRL_C = "Ctrl-C"


class CtrlC:
    """While the block runs, the first ``SIGINT`` drains ``engine`` (grace 0).

    Parameters
    ----------
    engine : daskhpo.engine.Engine
        The engine whose :meth:`~daskhpo.engine.Engine.run` the block calls.

    Attributes
    ----------
    pressed : bool
        Whether a Ctrl-C drained the run.
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.pressed = False
        self._previous: Any = None

    def __enter__(self) -> CtrlC:
        # Only Python's own handler is replaced: a program (or a kernel) with a handler of its
        # own keeps it; ipykernel runs cells with the default one, so an interrupted cell drains.
        # dask_jobqueue's import-time one (sys.exit(), meant for its batch runners) counts as
        # Python's: with it Ctrl-C in a search script exited silently with status 0.
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if previous is signal.default_int_handler or getattr(previous, "__module__", None) == "dask_jobqueue.runner":
                signal.signal(signal.SIGINT, self._handler)
                self._previous = previous
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C interrupts at once
        if not self.engine.running:
            raise KeyboardInterrupt
        self.pressed = True
        self.engine.drain(0.0, CTRL_C, quiet=True)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def interrupted_message(finished: int, kept: str, abandoned: int) -> str:
    """The one line a Ctrl-C ends with: what is kept where (``Storage.kept``), and how to go on."""
    trials = "1 finished trial" if finished == 1 else f"{finished} finished trials"
    cancelled = ("" if not abandoned else " (1 trial cancelled in flight runs again)" if abandoned == 1
                 else f" ({abandoned} trials cancelled in flight run again)")
    return f"search interrupted: {trials} {kept}; the same search run again continues from there{cancelled}"
