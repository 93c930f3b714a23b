"""daskhpo: asynchronous, distributed hyperparameter optimization on Dask.

>>> import daskhpo
>>> experiment = daskhpo.build_experiment(
...     "demo", space={"x": "uniform(-5, 5)"}, algorithm="random", seed=0)
>>> experiment.workon(lambda x: (x - 1) ** 2, max_trials=20)   # doctest: +SKIP
>>> experiment.best                                            # doctest: +SKIP
"""

from ._version import __version__  # noqa: E402
from .devices import TrialDevices  # noqa: E402
from .engine import NoWorkersError, SchedulerLostError, TooManyBrokenTrials  # noqa: E402
from .engine.lifetimes import Lifetimes  # noqa: E402
from .experiment import Experiment, build_experiment, create_experiment, load_experiment  # noqa: E402
from .optimizers import Optimizer, Suggestion, Trial, register_optimizer  # noqa: E402
from .pickling import UnpicklableObjective  # noqa: E402
from .records import ReportRecord, TrialRecord  # noqa: E402
from .reporting import (  # noqa: E402
    TrialPreempted,
    TrialPruned,
    current_trial_devices,
    load_checkpoint,
    preempt_trials,
    report,
)
from .space import (  # noqa: E402
    Space,
    choices,
    fidelity,
    loguniform,
    normal,
    randint,
    uniform,
)
from .store.errors import CorruptStorage  # noqa: E402
from .store.lock import StorageLocked  # noqa: E402

__all__ = [
    "__version__",
    "build_experiment",
    "create_experiment",
    "load_experiment",
    "Experiment",
    "Space",
    "uniform",
    "loguniform",
    "normal",
    "randint",
    "choices",
    "fidelity",
    "Optimizer",
    "Suggestion",
    "Trial",
    "register_optimizer",
    "TooManyBrokenTrials",
    "NoWorkersError",
    "SchedulerLostError",
    "Lifetimes",
    "SlurmGPUCluster",
    "submit",
    "DriverJob",
    "report",
    "load_checkpoint",
    "current_trial_devices",
    "TrialDevices",
    "TrialPruned",
    "TrialPreempted",
    "preempt_trials",
    "TrialRecord",
    "ReportRecord",
    "StorageLocked",
    "CorruptStorage",
    "UnpicklableObjective",
]


#: modules that moved into store/, viz/ and integrations/: ``daskhpo.<old name>`` still reaches them
from ._moved import MOVED as _MOVED  # noqa: E402
from ._moved import install as _install_moved  # noqa: E402

_install_moved(__name__)


def __getattr__(name: str):
    if name in _MOVED:  # daskhpo.callbacks, daskhpo.storage_lock.StorageLocked, ... as before the move
        import importlib

        return importlib.import_module(f".{name}", __name__)
    # Imported on first use: importing dask_jobqueue has side effects (see daskhpo.integrations.cluster).
    if name == "SlurmGPUCluster":
        from .integrations.cluster import SlurmGPUCluster

        return SlurmGPUCluster
    if name in ("submit", "DriverJob"):  # the Slurm driver job (daskhpo.integrations.driver), on first use too
        from .integrations import driver

        return getattr(driver, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
