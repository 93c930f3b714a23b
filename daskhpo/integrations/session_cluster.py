"""One local Dask cluster per Python session, started on first use, that needs no main guard.

Integrations that run without a user-given client (:class:`daskhpo.integrations.sklearn.SearchCV`) use
:func:`session_client`: the current Dask client when there is one, else the client of a
:class:`~distributed.LocalCluster` started once for the session (about 5 s) and closed at
exit, so that a second ``fit`` reuses the same worker processes.

Worker processes, not threads: scikit-learn estimators and most objectives hold the GIL
for much of their work.  Dask starts them with multiprocessing's ``spawn``, which
re-executes the user's script (``__main__``) in every worker unless it is guarded by
``if __name__ == "__main__":``; the script would then build its search, and start its own
cluster, in each worker.  :func:`_hide_main_from_dask_workers` keeps ``spawn`` from
re-executing ``__main__`` in Dask's worker processes only (they are recognized by the
process name Dask gives them): a worker needs nothing from the script, since Dask sends
functions and classes of ``__main__`` by value (cloudpickle).  Other processes the user
starts with multiprocessing are left as they were.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing.spawn
import os
import threading
from typing import Any

__all__ = ["session_client", "close_session_cluster"]

logger = logging.getLogger(__name__)

#: the name Dask's Nanny gives the worker process it starts (distributed.nanny)
_DASK_WORKER_PROCESS = "Dask Worker process (from Nanny)"

_lock = threading.Lock()
_session: dict[str, Any] = {}


def _hide_main_from_dask_workers() -> None:
    """Make ``spawn`` skip the re-import of ``__main__`` for Dask's worker processes (idempotent)."""
    original = multiprocessing.spawn.get_preparation_data
    if getattr(original, "_daskhpo_hides_main", False):
        return

    def get_preparation_data(name: str) -> dict:
        data = original(name)
        if name == _DASK_WORKER_PROCESS:
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data

    get_preparation_data._daskhpo_hides_main = True  # type: ignore[attr-defined]
    multiprocessing.spawn.get_preparation_data = get_preparation_data


def _in_worker_bootstrap() -> bool:
    """Whether this process is a multiprocessing child still importing the parent's script."""
    return multiprocessing.parent_process() is not None and getattr(
        multiprocessing.process.current_process(), "_inheriting", False
    )


def session_client() -> Any:
    """The current Dask client, else the session's local cluster's (started on first call).

    Returns
    -------
    distributed.Client

    Notes
    -----
    The session cluster has one single-threaded worker process per CPU core
    (``os.cpu_count()``), binds its scheduler and dashboard to 127.0.0.1 (the dashboard on
    a free port, logged), and is closed when the interpreter exits or by
    :func:`close_session_cluster`.
    """
    from distributed import Client, LocalCluster, default_client

    try:
        return default_client()
    except ValueError:
        pass
    with _lock:
        client = _session.get("client")
        if client is not None and client.status == "running":
            return client
        if _in_worker_bootstrap():
            raise RuntimeError(
                "daskhpo: a local cluster cannot be started while a child process imports the "
                "main script; start your own processes under `if __name__ == \"__main__\":`"
            )
        _hide_main_from_dask_workers()
        n_workers = max(1, os.cpu_count() or 1)
        logger.info("No Dask client: starting a LocalCluster of %d worker processes for this session", n_workers)
        cluster = LocalCluster(
            n_workers=n_workers, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0"
        )
        client = Client(cluster, set_as_default=False)
        logger.info("Session cluster's Dask dashboard: %s", client.dashboard_link)
        _session.update(cluster=cluster, client=client)
        if not _session.get("atexit"):
            atexit.register(close_session_cluster)
            _session["atexit"] = True
        return client


def close_session_cluster() -> None:
    """Close the session's local cluster, if one was started (a later call starts a new one)."""
    with _lock:
        client, cluster = _session.pop("client", None), _session.pop("cluster", None)
    # the nanny warns when a worker takes over its grace period to stop, which is no news
    # when the whole cluster is being closed at exit
    nanny_logger = logging.getLogger("distributed.nanny")
    level = nanny_logger.level
    nanny_logger.setLevel(logging.ERROR)
    try:
        for thing in (client, cluster):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # noqa: BLE001 - closing at exit: nothing left to tell
                    logger.debug("closing the session cluster", exc_info=True)
    finally:
        nanny_logger.setLevel(level)
