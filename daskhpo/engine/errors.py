"""The engine's errors, importable without Dask (the loop raises them; executors too)."""

from __future__ import annotations

__all__ = ["NoWorkersError", "SchedulerLostError", "TooManyBrokenTrials"]


class NoWorkersError(RuntimeError):
    """No Dask worker became available in time."""


class SchedulerLostError(NoWorkersError):
    """The connection to the Dask scheduler was lost for ``worker_timeout`` seconds."""


class TooManyBrokenTrials(RuntimeError):
    """Broken trials (raised, returned garbage, timed out, were lost) stopped the run.

    With ``max_broken="auto"`` (the default) only an objective that looks broken itself
    stops it; with an int, more broken trials than that (see :mod:`daskhpo.engine.broken`).
    """
