"""Real Dask clusters for the tests, always closed."""

from __future__ import annotations

import pytest
from distributed import Client, LocalCluster


@pytest.fixture(scope="session")
def client():
    """An in-process cluster: 2 workers of 1 thread (fast to start, shares memory)."""
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as cluster, Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture(scope="session")
def process_client():
    """A cluster of 2 worker processes of 1 thread each, as users run it."""
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster, Client(cluster, set_as_default=False) as client:
        yield client


# -- the fast lane: `python -m pytest -q -m fast` ------------------------------------------------
# Tests that start no Dask cluster, browser or Slurm, in modules that start no other process, are
# marked `fast` at collection: the engine on the fake executor, the optimizers, the storage.  A
# test is judged by its own source and its fixtures' sources, and its module's for processes; in the fast lane a test that starts a cluster anyway
# (through a helper) fails, naming itself, so the lane stays what it says.
# `@pytest.mark.slow` keeps a test out of the lane (a long computation without any cluster), and
# so does a parameter "gp": each of the GP's model fits costs a good fraction of a second.

#: what in a test's or fixture's source means a real Dask cluster, a browser or Slurm
_REAL_RESOURCES = (
    "Cluster(", "Client(", "workon(", "tmp_executor", "dask_processes", "Nanny", "Scheduler(",
    "launch_browser", "slurm",
)
#: what in a test module's source means its tests start other processes (scripts, examples, CLIs)
_PROCESSES = ("subprocess", "Popen", "sys.executable", "multiprocessing")


def _source(obj) -> str:
    import inspect

    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


def _uses_real_resources(item: pytest.Item) -> bool:
    module = getattr(item, "module", None)
    if module is not None and any(marker in _source(module) for marker in _PROCESSES):
        return True
    sources = [_source(getattr(item, "function", None))]
    info = getattr(item, "_fixtureinfo", None)
    for name in item.fixturenames:
        if name == "_fast_lane_guard":
            continue  # the lane's own guard
        for fixturedef in (info.name2fixturedefs.get(name, ()) if info else ()):
            sources.append(_source(fixturedef.func))
    return any(marker in source for source in sources for marker in _REAL_RESOURCES)


def _slow(item: pytest.Item) -> bool:
    params = getattr(getattr(item, "callspec", None), "params", {})
    return item.get_closest_marker("slow") is not None or any(isinstance(v, str) and v == "gp" for v in params.values())


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fast: starts no cluster nor process (set in tests/conftest.py); `-m fast`")
    config.addinivalue_line("markers", "slow: never in the fast lane, even without a cluster")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not _slow(item) and not _uses_real_resources(item):
            item.add_marker(pytest.mark.fast)


@pytest.fixture(autouse=True)
def _fast_lane_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """In the fast lane (`-m fast`), a test that starts a Dask cluster fails, naming itself.

    (Processes are judged by the source only: the library's own small ones, such as
    ``platform.processor()``'s ``uname -p``, are fine.)
    """
    if "fast" not in (request.config.option.markexpr or "") or request.node.get_closest_marker("fast") is None:
        yield
        return
    from distributed.deploy.spec import SpecCluster

    def refuse(self, *args, **kwargs):
        raise AssertionError(
            f"{request.node.nodeid} is in the fast lane but starts a Dask cluster: mark it "
            "@pytest.mark.slow, or name what starts it in tests/conftest.py's _REAL_RESOURCES"
        )

    monkeypatch.setattr(SpecCluster, "__init__", refuse)
    yield
