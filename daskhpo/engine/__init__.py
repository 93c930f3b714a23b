"""The engine: the loop on the client, the executors it runs trials on, the worker side.

==========================  ==============================================================
:mod:`.loop`                :class:`Engine`: keep trials in flight, retries, stopping rules
:mod:`.drain`               a graceful stop (drain) from another thread or a signal handler
:mod:`.executor`            the executor protocol, its capabilities, the events it emits
:mod:`.state`               :class:`LoopState`: the loop's decisions, a pure state machine
:mod:`.broken`              ``max_broken``: when broken trials end a run (pure policy)
:mod:`.quarantine`          faulty-node quarantine: do a worker's failures reproduce elsewhere?
:mod:`.errors`              the engine's errors (no Dask needed to import them)
:mod:`.dask_executor`       :class:`DaskExecutor`: futures, as_completed, pub/sub, watchdog
:mod:`.fake`                :class:`FakeExecutor`: in-process, virtual time, for tests;
                            :class:`FakeModelExecutor`: the suggester path in virtual time
:mod:`.suggester`           :class:`Suggester`: the optimizer on a thread of its own
:mod:`.packed`              ``PackedDaskExecutor``: several short trials per Dask task
:mod:`.simulate`            ``ModelClockExecutor``: fake executor charged with real work
:mod:`.worker`              :func:`run_trial`: one attempt on a worker, deadlines, reports
==========================  ==============================================================
"""

from .dask_executor import DaskExecutor
from .drain import DrainRequest, clear_drain, drain_requested, install_signal_handlers, request_drain
from .errors import NoWorkersError, SchedulerLostError, TooManyBrokenTrials
from .executor import (
    Clocked,
    Completed,
    Executor,
    Failed,
    NoWorkers,
    Quarantining,
    Releasing,
    Reported,
    Rerun,
    Wake,
    Wakeable,
)
from .fake import FakeExecutor, FakeModelExecutor
from .loop import Engine, Planned
from .suggester import Suggester
from .worker import TrialOutcome, TrialTask, TrialTimeout, run_trial

__all__ = [
    "Engine",
    "DrainRequest",
    "request_drain",
    "drain_requested",
    "clear_drain",
    "install_signal_handlers",
    "Planned",
    "TooManyBrokenTrials",
    "NoWorkersError",
    "SchedulerLostError",
    "Executor",
    "Wakeable",
    "Releasing",
    "Quarantining",
    "Clocked",
    "DaskExecutor",
    "FakeExecutor",
    "FakeModelExecutor",
    "Completed",
    "Failed",
    "Reported",
    "Rerun",
    "NoWorkers",
    "Wake",
    "Suggester",
    "TrialTask",
    "TrialOutcome",
    "TrialTimeout",
    "run_trial",
]
