"""Dask clusters on batch schedulers, with GPU settings that agree with each other.

A trial that needs a GPU must reach a worker that has one, and never share it.  On Slurm
three settings have to agree for that:

1. the job asks Slurm for the GPUs (``#SBATCH --gres=gpu:N``), so Slurm places it on a GPU
   node and sets ``CUDA_VISIBLE_DEVICES`` for it;
2. the Dask worker in the job declares them as a resource (``--resources GPU=N``), so the
   scheduler knows which workers have GPUs and how many trials each may run at once;
3. each trial is annotated with what it uses (``resources={"GPU": 1}``), so it only runs on
   such a worker, and at most N of them at a time there.

:class:`SlurmGPUCluster` sets all three from one number.  It is an ordinary
:class:`dask_jobqueue.SLURMCluster` otherwise: ``scale``, ``adapt``, ``job_script`` and
every keyword of dask-jobqueue work as documented there.  Other batch systems (PBS, LSF,
SGE, HTCondor, ...) work through the same path, since the engine only needs a
:class:`distributed.Client`: build their dask-jobqueue cluster with the scheduler's own GPU
directive, ``worker_extra_args=["--resources", "GPU=N"]``, and pass
``resources={"GPU": 1}`` to :meth:`daskhpo.Experiment.workon`.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from typing import Any

import dask.config
from dask_jobqueue import SLURMCluster
from dask_jobqueue.slurm import SLURMJob

__all__ = ["SlurmGPUCluster"]

logger = logging.getLogger(__name__)


def _restore_ctrl_c() -> None:
    """Undo dask-jobqueue's import-time ``SIGINT`` handler in the user's process.

    Importing ``dask_jobqueue`` (0.9) installs ``signal.signal(SIGINT, lambda *_:
    sys.exit())``, meant for its batch-runner processes: Ctrl-C in a search script would
    then end it with ``SystemExit`` and exit status 0, instead of ``KeyboardInterrupt``.
    Only that handler is replaced, and only from the main thread.
    """
    handler = signal.getsignal(signal.SIGINT)
    if (
        getattr(handler, "__module__", None) == "dask_jobqueue.runner"
        and threading.current_thread() is threading.main_thread()
    ):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        logger.debug("restored the default SIGINT handler replaced by dask_jobqueue.runner")


_restore_ctrl_c()

#: sbatch options that also request GPUs: they would contradict ``gpus_per_job``
_GPU_DIRECTIVES = ("--gres", "--gpus", "-G", "--gpus-per-node", "--gpus-per-task", "--gpus-per-socket")


def _option_name(arg: str) -> str:
    return arg.split("=", 1)[0].split()[0] if arg.strip() else arg


#: the warning signals a job may ask for (``--signal=B:<name>@<seconds>``): both are
#: handled by daskhpo's worker plugins and kill nothing that ignores them
PREEMPT_SIGNALS = ("USR1", "USR2")
#: the most seconds ahead Slurm sends a job's signal (``--signal``'s 16-bit field)
_MAX_WARNING_S = 65535


class _ExecSLURMJob(SLURMJob):
    """A Slurm job whose batch shell ``exec`` s the Dask worker command.

    The worker's nanny is then the batch shell itself: the signal of
    ``#SBATCH --signal=B:USR1@120``, which Slurm sends only to the batch shell, reaches it
    (a bash waiting for a foreground command would run its trap only once the worker
    exited), and it forwards the signal to its worker process.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._command_template = f"exec {self._command_template}"


class SlurmGPUCluster(SLURMCluster):
    """A :class:`dask_jobqueue.SLURMCluster` whose jobs, workers and trials agree on GPUs.

    Every Slurm job asks for ``gpus_per_job`` GPUs (``--gres=gpu[:type]:N``); its Dask
    worker process(es) declare them as the resource ``GPU``; :attr:`trial_resources` is
    the matching annotation for :meth:`daskhpo.Experiment.workon`.

    Parameters
    ----------
    gpus_per_job : int, default 1
        GPUs each Slurm job requests.  0 gives a plain CPU cluster (no ``--gres``, no
        worker resource, :attr:`trial_resources` is ``None``).
    gpus_per_trial : int, default 1
        GPUs each trial uses; a worker with ``gpus_per_job`` GPUs runs at most
        ``gpus_per_job // gpus_per_trial`` trials at once, whatever its thread count.
    gpu_type : str, optional
        A GRES type (``--gres=gpu:a100:1``), as your site names them.
    preempt_signal : {"USR1", "USR2"} or None, default "USR1"
        The signal Slurm sends each job ``warning_seconds`` before its time limit
        (``#SBATCH --signal=B:USR1@120``).  On it, and on the ``SIGTERM`` of a ``scancel``,
        a preemption or the time limit, the job's worker asks its running trials to
        checkpoint and stop at their next :func:`daskhpo.report` (they resume on another
        worker from that checkpoint), takes no new trial, and leaves once idle.  The
        worker command is ``exec`` ed, so that the batch shell that receives the signal is
        the worker's nanny, and the signal is ignored until the worker is ready for it.
        ``None``: no warning signal (``SIGTERM`` still preempts).
    warning_seconds : int, default 120
        Seconds before the time limit to send ``preempt_signal``: enough for a trial's
        next report and its checkpoint to travel.  Slurm sends it up to a minute early or
        late (its timer's resolution).
    processes : int, default 1
        Dask worker processes per job.  Each declares ``gpus_per_job // processes`` GPUs.
        Keep 1 unless you know why: every process of a job sees all of the job's GPUs in
        ``CUDA_VISIBLE_DEVICES``, so with several the objective must pick its own device.
    **kwargs
        Everything else :class:`~dask_jobqueue.SLURMCluster` takes (``cores``, ``memory``,
        ``walltime``, ``queue``, ``account``, ``log_directory``, ``interface``, ...).  Your
        own ``job_extra_directives`` and ``worker_extra_args`` (or those of the
        ``jobqueue.slurm`` configuration) are kept; the GPU settings are added to them.

    Raises
    ------
    ValueError
        If ``preempt_signal`` is not one of ``PREEMPT_SIGNALS`` or ``warning_seconds`` not
        an integer in 1..65535, if ``job_extra_directives`` already set ``--signal``, or
        if the numbers do not fit together (a trial needing more GPUs than a worker has,
        GPUs that do not divide among the processes), or if ``job_extra_directives`` or
        ``worker_extra_args`` already request GPUs or resources, which would contradict
        ``gpus_per_job``.

    Examples
    --------
    >>> cluster = SlurmGPUCluster(gpus_per_job=1, cores=4, memory="16GB",
    ...                           walltime="02:00:00")                     # doctest: +SKIP
    >>> cluster.job_script()                                              # doctest: +SKIP
    '... #SBATCH --signal=B:USR1@120 ... trap '' USR1 ... exec .../python -m distributed.cli.dask_worker ...'
    >>> cluster.adapt(minimum=0, maximum=32)                               # doctest: +SKIP
    >>> with Client(cluster) as client:                                    # doctest: +SKIP
    ...     experiment.workon(train, max_trials=500, n_workers=32,
    ...                       resources=cluster.trial_resources)
    """

    def __init__(
        self,
        *,
        gpus_per_job: int = 1,
        gpus_per_trial: int = 1,
        gpu_type: str | None = None,
        preempt_signal: str | None = "USR1",
        warning_seconds: int = 120,
        processes: int = 1,
        **kwargs: Any,
    ) -> None:
        for name, value, least in (("gpus_per_job", gpus_per_job, 0), ("gpus_per_trial", gpus_per_trial, 1),
                                   ("processes", processes, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        config_name = kwargs.get("config_name") or "slurm"
        directives = self._from_config(kwargs.pop("job_extra_directives", None), config_name, "job-extra-directives")
        worker_args = self._from_config(kwargs.pop("worker_extra_args", None), config_name, "worker-extra-args")
        prologue = list(kwargs.pop("job_script_prologue", None)
                        or dask.config.get(f"jobqueue.{config_name}.job-script-prologue", default=None) or [])
        directives, prologue = self._preemption(preempt_signal, warning_seconds, directives, prologue)
        kwargs["job_script_prologue"] = prologue
        #: the signal each job receives ``warning_seconds`` before its time limit (None: none)
        self.preempt_signal = preempt_signal
        self.warning_seconds = warning_seconds
        self.gpus_per_job = gpus_per_job
        self.gpus_per_worker = 0
        #: the annotation of a trial, for ``workon(..., resources=...)``; None without GPUs
        self.trial_resources: dict[str, int] | None = None
        if gpus_per_job:
            if gpus_per_job % processes:
                raise ValueError(
                    f"gpus_per_job={gpus_per_job} GPUs cannot be shared evenly by processes={processes} "
                    "worker processes per job"
                )
            self.gpus_per_worker = gpus_per_job // processes
            if gpus_per_trial > self.gpus_per_worker:
                raise ValueError(
                    f"gpus_per_trial={gpus_per_trial} but each worker has {self.gpus_per_worker} GPU(s) "
                    f"(gpus_per_job={gpus_per_job}, processes={processes}): no trial could ever run"
                )
            clash = [d for d in directives if _option_name(d) in _GPU_DIRECTIVES]
            if clash:
                raise ValueError(
                    f"job_extra_directives already request GPUs ({clash}); let gpus_per_job= set them "
                    "or use dask_jobqueue.SLURMCluster directly"
                )
            if any(_option_name(a) == "--resources" for a in worker_args):
                raise ValueError(
                    f"worker_extra_args already declare --resources ({worker_args}); let gpus_per_job= "
                    "set them or use dask_jobqueue.SLURMCluster directly"
                )
            gres = f"gpu:{gpu_type}:{gpus_per_job}" if gpu_type else f"gpu:{gpus_per_job}"
            directives = [*directives, f"--gres={gres}"]
            worker_args = [*worker_args, "--resources", f"GPU={self.gpus_per_worker}"]
            self.trial_resources = {"GPU": gpus_per_trial}
        kwargs.setdefault("job_cls", _ExecSLURMJob)
        super().__init__(
            processes=processes, job_extra_directives=directives, worker_extra_args=worker_args, **kwargs
        )
        logger.debug("SlurmGPUCluster: %d GPU(s) per job, trials use %s", gpus_per_job, self.trial_resources)

    @staticmethod
    def _preemption(signal_name: str | None, seconds: int, directives: list[str],
                    prologue: list[str]) -> tuple[list[str], list[str]]:
        """The ``--signal`` directive and the prologue's ``trap`` (this text goes into a job script)."""
        if signal_name is not None and signal_name not in PREEMPT_SIGNALS:
            raise ValueError(f"preempt_signal must be one of {PREEMPT_SIGNALS} or None, got {signal_name!r}")
        if not isinstance(seconds, int) or isinstance(seconds, bool) or not 1 <= seconds <= _MAX_WARNING_S:
            raise ValueError(f"warning_seconds must be an integer from 1 to {_MAX_WARNING_S}, got {seconds!r}")
        if signal_name is None:
            return directives, prologue
        clash = [d for d in directives if _option_name(d) == "--signal"]
        if clash:
            raise ValueError(f"job_extra_directives already set {clash}; use preempt_signal= and warning_seconds= "
                             "(or preempt_signal=None to keep yours)")
        # Ignored until the worker's plugin handles it (inherited through exec), so that an
        # early signal does not kill a worker that is still starting.
        return [*directives, f"--signal=B:{signal_name}@{seconds}"], [f"trap '' {signal_name}", *prologue]

    @staticmethod
    def _from_config(given: Sequence[str] | None, config_name: str, key: str) -> list[str]:
        if given is None:
            given = dask.config.get(f"jobqueue.{config_name}.{key}", default=None) or []
        if isinstance(given, str):
            raise ValueError(f"{key.replace('-', '_')} must be a list of strings, got the string {given!r}")
        return list(given)
