"""Worker processes that the user's Ctrl-C does not reach.

A terminal sends Ctrl-C's ``SIGINT`` to every process of its foreground group: the search
script, and the worker processes of a :class:`~distributed.LocalCluster` the script started
(they are its children, started by the nannies in the script's own process).  Each worker
then dies of a ``KeyboardInterrupt``, and prints about 40 lines of distributed's nanny and
asyncio tracebacks, while the script stops the search itself (it drains: see
:mod:`daskhpo.experiment.interrupt`), saves it, and closes the cluster, which ends the
workers anyway.  A Ctrl-C seen by both printed some 95 lines for two workers.

:func:`shield_local_workers` registers a worker plugin that makes such workers ignore
``SIGINT``: only workers whose parent process is the client's (a local cluster's children),
so that a ``dask worker`` started by hand, or one in a batch job, keeps its Ctrl-C.  Nothing
is lost: a worker process ends when its parent does (distributed watches the parent), and
the client closes the cluster it owns.  A worker that saw the Ctrl-C also drops the one
warning line per running task that the close logs (``Async instruction ... ended with
CancelledError``): its task is a trial the interrupted search cancelled.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

__all__ = ["IgnoreCtrlC", "closing_after_ctrl_c", "shield_local_workers"]

logger = logging.getLogger(__name__)


class _ClosingAfterCtrlC(logging.Filter):
    """Drop distributed's warning that a task was cancelled by the worker's close.

    After a Ctrl-C the client cancels the trials in flight and closes its cluster while
    their objectives may still run: each such worker then logs ``Async instruction for
    <Task cancelled ...> ended with CancelledError``, which says nothing the user's
    Ctrl-C did not.  Installed only once the worker itself saw the Ctrl-C.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Async instruction for") and message.endswith("ended with CancelledError"))


_STATE_MACHINE = "distributed.worker.state_machine"


def _on_ctrl_c(signum: int, frame: Any) -> None:
    # a signal handler: only attaches a filter (once), nothing that could block
    state_machine = logging.getLogger(_STATE_MACHINE)
    if not any(isinstance(f, _ClosingAfterCtrlC) for f in state_machine.filters):
        state_machine.addFilter(_ClosingAfterCtrlC())


@contextlib.contextmanager
def closing_after_ctrl_c() -> Iterator[None]:
    """While the block closes in-process workers after a Ctrl-C, drop the close's warnings
    about the tasks it cancels (see :class:`_ClosingAfterCtrlC`)."""
    quiet = _ClosingAfterCtrlC()
    state_machine = logging.getLogger(_STATE_MACHINE)
    state_machine.addFilter(quiet)
    try:
        yield
    finally:
        state_machine.removeFilter(quiet)


class IgnoreCtrlC(WorkerPlugin):
    """Ignore ``SIGINT`` in a worker process that is a child of process ``parent``.

    The worker goes on (its parent stops the search and closes the cluster); it only
    stops logging that the close cancelled its running task.

    Parameters
    ----------
    parent : int
        The client's process id.
    """

    name = "daskhpo-ignore-ctrl-c"
    idempotent = True

    def __init__(self, parent: int) -> None:
        self.parent = parent

    def setup(self, worker: Any) -> None:
        # A nanny's worker process runs its event loop (and this) on its main thread; an
        # in-process worker (threads of the client's process) does not, and is left alone.
        if os.getppid() == self.parent and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, _on_ctrl_c)


def shield_local_workers(client: Any) -> None:
    """Make the worker processes of ``client``'s own local cluster ignore Ctrl-C.

    Only for a client that owns a :class:`~distributed.LocalCluster` (``client.cluster``):
    a cluster elsewhere (Slurm, a scheduler file) costs no round trip.  A failure is logged
    and ignored: the search runs all the same.
    """
    from distributed import LocalCluster

    if not isinstance(getattr(client, "cluster", None), LocalCluster):
        return
    try:
        client.register_plugin(IgnoreCtrlC(os.getpid()), name=IgnoreCtrlC.name)
    except Exception as exc:  # e.g. a worker that cannot unpickle it: Ctrl-C is only noisier
        logger.debug("could not make the local workers ignore Ctrl-C: %s", exc)
