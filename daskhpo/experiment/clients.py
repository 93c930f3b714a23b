"""Which Dask client a run uses: the one given, the current one, or an implicit local cluster."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

__all__ = ["client_for", "implicit_client", "temporary_client"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def client_for(client: Any) -> Iterator[Any]:
    """The given client, the current one, or an implicit local cluster's for the duration."""
    if client is not None:
        yield client
        return
    from distributed import default_client

    try:
        current = default_client()
    except ValueError:  # no client: not an error of the block below
        current = None
    if current is not None:
        yield current
        return
    with implicit_client() as local:
        yield local


@contextlib.contextmanager
def implicit_client() -> Iterator[Any]:
    """A Dask client of an in-process :class:`~distributed.LocalCluster`, closed afterwards.

    The cluster that :meth:`Experiment.workon` starts when no client is given or current.
    Its workers are **threads** of this process, so that a plain script with no
    ``if __name__ == "__main__":`` guard runs as pasted: worker *processes* would be
    started by re-importing the script (``multiprocessing``'s spawn), which would build
    the experiment again (``StorageLocked``) and start another cluster (``Nanny failed
    to start``).  The cost: objectives that hold the GIL (pure Python) run one at a
    time; numpy, scikit-learn, PyTorch and subprocesses release it.  Give a client of a
    process cluster for those (docs: "Threads or processes").

    It listens on the loopback interface only: the scheduler and workers talk in-process
    (``inproc://``), and the Dask dashboard and the workers' HTTP servers listen on
    ``127.0.0.1``, on free ports (never ``0.0.0.0:8787``).

    Yields
    ------
    distributed.Client
        The default client while the block runs.
    """
    import dask
    from distributed import Client, LocalCluster
    from distributed.deploy.utils import nprocesses_nthreads

    # the same workers and threads as LocalCluster's process default, so that quarantine
    # and n_workers see the usual topology; memory_limit=0: in-process workers all measure
    # this one process's memory, and would pause at a fraction of it that is not theirs
    n_workers, threads_per_worker = nprocesses_nthreads()
    logger.info("No Dask client: starting an in-process LocalCluster (%d workers x %d threads) for this run",
                n_workers, threads_per_worker)
    loopback = "127.0.0.1:0"  # the workers' HTTP servers too: they listen on 0.0.0.0 otherwise
    # the dashboard link names the host of the in-process address, which it does not listen on
    with dask.config.set({"distributed.dashboard.link": "{scheme}://127.0.0.1:{port}/status"}), \
            LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, processes=False,
                         memory_limit=0, dashboard_address=loopback, worker_dashboard_address=loopback) as cluster, \
            Client(cluster) as local:
        try:
            yield local
        except KeyboardInterrupt:
            _close_workers_now(cluster)
            raise


def _close_workers_now(cluster: Any) -> None:
    """After a Ctrl-C: close the in-process workers without waiting for their running trials.

    A worker's close waits for its threads by default: an interrupted script stayed until
    the objectives that the interrupt cancelled returned (minutes, for a training run).
    Dask's worker threads are daemon threads, which end with the process.
    """
    import asyncio

    from ..engine.local_workers import closing_after_ctrl_c

    workers = list(cluster.workers.values())
    try:
        with closing_after_ctrl_c():
            cluster.sync(lambda: asyncio.gather(*(w.close(executor_wait=False, reason="interrupted") for w in workers)))
    except Exception as exc:  # the cluster's own close follows: it tries again
        logger.debug("could not close the in-process workers at once: %s", exc)


@contextlib.contextmanager
def temporary_client(n_workers: int | None = None, **cluster_kwargs: Any) -> Iterator[Any]:
    """A client of a :class:`~distributed.LocalCluster` of worker processes, closed afterwards.

    What :meth:`~daskhpo.Experiment.tmp_executor` runs on: one thread per worker unless
    ``threads_per_worker`` says otherwise, and the dashboard on ``127.0.0.1`` on a free port
    unless ``dashboard_address`` does (never all interfaces by default).
    """
    from distributed import Client, LocalCluster

    cluster_kwargs.setdefault("threads_per_worker", 1)
    cluster_kwargs.setdefault("dashboard_address", "127.0.0.1:0")
    with LocalCluster(n_workers=n_workers, **cluster_kwargs) as cluster, Client(cluster) as client:
        yield client
