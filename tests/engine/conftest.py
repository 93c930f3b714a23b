"""Fixtures of the engine's tests on real worker processes."""

from __future__ import annotations

import pytest
from distributed import Client, LocalCluster


@pytest.fixture(scope="module")
def nanny_cluster_client():
    """Worker processes with nannies and the default scheduler settings (allowed-failures=3):
    a task whose worker died is run again by the scheduler, and a killed worker comes back."""
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0") as cluster, Client(
        cluster, set_as_default=False
    ) as client:
        yield client


@pytest.fixture
def nanny_client(nanny_cluster_client):
    """The module's cluster, once both workers are up (a nanny restarts the one a test killed)."""
    nanny_cluster_client.wait_for_workers(2, timeout=120)
    return nanny_cluster_client
