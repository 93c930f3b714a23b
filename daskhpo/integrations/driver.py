"""The search driver as a chain of Slurm jobs: no process on the login node.

``daskhpo submit train.py`` (or :func:`submit`) queues a small CPU-only **driver job**
that runs ``train.py`` unchanged: the script that works on a login node, with its
:class:`~daskhpo.SlurmGPUCluster` and ``storage=``.  So the Dask scheduler, the client and
the optimizer loop live inside that job, and the worker jobs are submitted from it.

Each driver job, when it starts:

1. queues its **successor** (the same job, one restart later) with
   ``--dependency=afterany:<its own id>``: the successor becomes eligible whenever this
   job ends, cleanly or not (SIGKILL, ``scancel``, a node failure), unless ``max_restarts``
   successors were already queued;
2. makes ``SIGUSR1`` (asked of Slurm with ``--signal=B:USR1@<signal_before>``, some time
   before the walltime) and ``SIGTERM`` (the walltime itself, ``scancel``) *drain* the search
   (:mod:`daskhpo.engine.drain`): nothing more is submitted, the trials in flight get
   ``grace`` seconds (``0`` after SIGTERM) to finish and be recorded, the rest are cancelled
   unrecorded (the successor runs them again), the history is written and ``workon``
   returns;
3. runs the script (:func:`runpy.run_path`, as ``__main__``, with its arguments);
4. closes the Dask clusters the script left open (their worker jobs are cancelled), and
   decides: after a drain it hands over (the successor resumes from the storage); when the
   script ran to its end without one the search is finished, and the successor is
   cancelled (the chain ends); when the script failed, the successor is cancelled too,
   unless the error was the cluster's (:class:`~daskhpo.NoWorkersError`, e.g. jobs that
   waited too long in the queue), which a successor may get past.

A driver that dies without draining (SIGKILL, node failure) leaves its storage lock to the
kernel (``flock`` is released with the process), its finished trials on disk, and its
worker jobs without a scheduler: each Dask worker exits after its ``death_timeout``
(dask-jobqueue's ``death_timeout``, ``dask worker --death-timeout``, 60 s by default),
which ends its job.  The successor then resumes as after a hand-over.

The history records each driver session (see :mod:`daskhpo.store.sessions`); ``daskhpo status
PATH`` shows them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import runpy
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DriverJob", "submit", "parse_walltime"]

logger = logging.getLogger(__name__)

#: seconds, on top of ``grace``, between the hand-over signal and the walltime: writing the
#: history and closing the cluster (about a minute at most), and Slurm's own resolution
#: (the signal "may be sent up to 60 seconds earlier than specified", sbatch(1))
MARGIN = 180
#: sbatch options the driver job sets itself
_OWN = {"--job-name": "job_name", "-J": "job_name", "--time": "walltime", "-t": "walltime", "--signal": "grace",
        "--output": "log_directory", "-o": "log_directory", "--error": "log_directory", "-e": "log_directory",
        "--dependency": None, "-d": None, "--partition": "partition", "-p": "partition",
        "--account": "account", "-A": "account", "--cpus-per-task": "cpus", "-c": "cpus", "--mem": "memory",
        "--mem-per-cpu": "memory", "--mem-per-gpu": "memory"}


def parse_walltime(walltime: str) -> int:
    """Seconds of a Slurm time limit written ``HH:MM:SS`` or ``D-HH:MM:SS``.

    Raises
    ------
    ValueError
        Naming the value, for anything else.
    """
    match = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d{1,2}):(\d{1,2})", str(walltime).strip())
    if not match or int(match[3]) > 59 or int(match[4]) > 59:
        raise ValueError(f"walltime must be HH:MM:SS or D-HH:MM:SS, got {walltime!r}")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


#: characters that would end a job-script line (or hide in one): C0 controls and DEL
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


def _check_script_text(name: str, value: Any, *, spaces: bool = True) -> None:
    """Refuse a value written into the job script that could add or break a line there.

    A newline in ``partition="gpu\n#SBATCH --x"`` would otherwise become its own
    ``#SBATCH`` directive (or command) of the script.
    """
    if value is None:
        return
    text = str(value)
    bad = _CONTROL.search(text)
    if bad:
        raise ValueError(
            f"{name} must not contain control characters (newline, tab...): {bad.group()!r} in {text!r}"
        )
    if not spaces and re.search(r"\s", text):
        raise ValueError(f"{name} must not contain whitespace, got {text!r}")


def _option(token: str) -> str:
    """The option a token names: ``--time=1:00`` and ``-t1:00`` (a short option with its value
    attached) name ``--time`` and ``-t``."""
    if token.startswith("--"):
        return token.split("=", 1)[0]
    return token[:2]


@dataclass(frozen=True)
class DriverJob:
    """One driver job of a chain: its Slurm request and what it runs.

    Parameters
    ----------
    script : str
        The search script (made absolute); it runs unchanged, as ``python script args...``.
    args : sequence of str
        Its command-line arguments.
    walltime : str, default "01:00:00"
        Each driver job's time limit (``HH:MM:SS`` or ``D-HH:MM:SS``).
    max_restarts : int, default 10
        Successors at most: the chain has at most ``max_restarts + 1`` driver jobs.
    grace : float, default 120
        Seconds that trials in flight get, after the hand-over signal, to finish and be
        recorded; those still running then are cancelled and run again by the successor.
    signal_before : int, optional
        Seconds before the walltime at which Slurm sends ``SIGUSR1``; default
        ``grace + 180`` (writing the history, closing the cluster, and Slurm's up to 60 s
        early delivery).
    partition, account : str, optional
        The driver job's partition and account: a small CPU partition is enough (the
        worker jobs ask for GPUs themselves).
    cpus : int, default 1
        CPUs of the driver job (the scheduler, the client and the optimizer share them).
    memory : str, default "4G"
        Memory of the driver job (``--mem``).
    sbatch_options : sequence of str
        Further ``sbatch`` options, e.g. ``["--qos=long", "--constraint", "intel"]``.
    job_name : str, optional
        Default ``daskhpo-<script name>``: one name for the whole chain, so ``squeue -n``
        shows it and ``scancel -n`` stops it (the pending successor included).
    log_directory : str, default "daskhpo-logs"
        Where each driver job writes its output, ``<job_name>-<jobid>.out`` (made absolute).
    workdir : str, optional
        The directory the script runs in (default: the current one, made absolute).
    python : str, optional
        The Python interpreter (default: this one, ``sys.executable``).
    restart : int, default 0
        This job's place in the chain (0: the first).

    Raises
    ------
    ValueError
        Naming the bad value: a script that is not a file, a malformed walltime, a
        walltime too short for ``signal_before``, a negative count or grace, or an
        ``sbatch_options`` entry the driver job sets itself.
    """

    script: str
    args: Sequence[str] = ()
    walltime: str = "01:00:00"
    max_restarts: int = 10
    grace: float = 120.0
    signal_before: int | None = None
    partition: str | None = None
    account: str | None = None
    cpus: int = 1
    memory: str = "4G"
    sbatch_options: Sequence[str] = ()
    job_name: str | None = None
    log_directory: str = "daskhpo-logs"
    workdir: str | None = None
    python: str = field(default_factory=lambda: sys.executable)
    restart: int = 0

    def __post_init__(self) -> None:
        fix = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 - frozen
        # every value written into the job script stays on its own line
        for name in ("partition", "account", "memory", "walltime"):
            _check_script_text(name, getattr(self, name), spaces=False)
        for name in ("script", "log_directory", "workdir", "python", "job_name"):
            _check_script_text(name, getattr(self, name))
        if not isinstance(self.sbatch_options, str):
            for token in self.sbatch_options:
                _check_script_text("sbatch_options", token)
        script = os.path.abspath(os.fspath(self.script))
        if not os.path.isfile(script):
            raise ValueError(f"script {self.script!r} is not a file")
        fix("script", script)
        if isinstance(self.args, str):
            raise ValueError(f"args must be a sequence of strings, got the string {self.args!r}")
        fix("args", tuple(str(a) for a in self.args))
        fix("sbatch_options", tuple(str(o) for o in self.sbatch_options))
        for name in ("max_restarts", "restart", "cpus"):
            value = getattr(self, name)
            least = 1 if name == "cpus" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        if isinstance(self.grace, bool) or not isinstance(self.grace, (int, float)) or not self.grace >= 0:
            raise ValueError(f"grace must be non-negative seconds, got {self.grace!r}")
        fix("grace", float(self.grace))
        limit = parse_walltime(self.walltime)
        lead = self.lead
        if isinstance(lead, bool) or not isinstance(lead, int) or not 0 < lead <= 65535:
            raise ValueError(f"signal_before must be whole seconds in 1..65535, got {self.signal_before!r}")
        if limit <= lead + 60:
            raise ValueError(
                f"walltime {self.walltime!r} ({limit} s) is too short: the hand-over signal comes {lead} s "
                f"before it (grace {self.grace:g} s + {MARGIN} s to write the history and close the cluster"
                "), leaving no minute for the search; raise walltime, or lower grace or signal_before"
            )
        for token in self.sbatch_options:
            if token.startswith("-") and _option(token) in _OWN:
                own = _OWN[_option(token)]
                instead = f"set {own}= instead" if own else "the driver sets it for its successor"
                raise ValueError(f"sbatch option {token!r} is set by the driver job itself ({instead})")
        name = self.job_name or f"daskhpo-{os.path.splitext(os.path.basename(script))[0]}"
        if not re.fullmatch(r"[\w.+-]+", name):
            raise ValueError(f"job_name must be letters, digits and . _ + -, got {name!r}")
        fix("job_name", name)
        fix("log_directory", os.path.abspath(self.log_directory))
        fix("workdir", os.path.abspath(self.workdir or os.getcwd()))

    @property
    def lead(self) -> int:
        """Seconds before the walltime at which the hand-over signal is asked for."""
        return int(self.grace) + MARGIN if self.signal_before is None else self.signal_before

    # -- the job script -----------------------------------------------------------------
    def job_script(self) -> str:
        """The batch script of this driver job (what ``daskhpo submit --print`` shows)."""
        directives = [
            f"--job-name={self.job_name}",
            f"--time={self.walltime}",
            f"--signal=B:USR1@{self.lead}",  # B: the batch shell only, which is the driver
            "--ntasks=1",
            f"--cpus-per-task={self.cpus}",
            f"--mem={self.memory}",
            f"--output={self.log_directory}/{self.job_name}-%j.out",
        ]
        if self.partition:
            directives.append(f"--partition={self.partition}")
        if self.account:
            directives.append(f"--account={self.account}")
        extra: list[str] = []
        for token in self.sbatch_options:  # "--qos long" stays one directive
            if token.startswith("-") or not extra:
                extra.append(token)
            else:
                extra[-1] += f" {shlex.quote(token)}"
        lines = ["#!/usr/bin/env bash", *(f"#SBATCH {d}" for d in [*directives, *extra])]
        lines += [
            f"# daskhpo driver job {self.restart + 1} of at most {self.max_restarts + 1}: runs "
            f"{os.path.basename(self.script)} unchanged",
            "# (its Dask scheduler, client and search live in this job), queues its successor",
            f"# (--dependency=afterany), and on SIGUSR1, {self.lead} s before the walltime, hands over:",
            f"# trials in flight get {self.grace:g} s, the history is written, the worker jobs cancelled.",
            f"cd {shlex.quote(self.workdir)}",
            "export PYTHONUNBUFFERED=1  # the script's prints reach the job's output as they happen",
            f"exec {shlex.quote(self.python)} -m daskhpo.integrations.driver {shlex.quote(self.to_json())}",
        ]
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        """This job as JSON (the argument of ``python -m daskhpo.integrations.driver``)."""
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> DriverJob:
        """The job :meth:`to_json` wrote."""
        return cls(**json.loads(text))

    def successor(self) -> DriverJob:
        """The next job of the chain."""
        return dataclasses.replace(self, restart=self.restart + 1)

    # -- submission -----------------------------------------------------------------------
    def submit(self, after: str | None = None) -> str:
        """Queue this job with ``sbatch``; returns its job id.

        Parameters
        ----------
        after : str, optional
            A job id: this job starts only once that one ended, whatever its outcome
            (``--dependency=afterany:<after>``).

        Raises
        ------
        RuntimeError
            When ``sbatch`` is not found or refuses the job (its message included).
        """
        if shutil.which("sbatch") is None:
            raise RuntimeError("sbatch not found: submit the driver job where Slurm's commands are (a login node)")
        os.makedirs(self.log_directory, exist_ok=True)
        command = ["sbatch", "--parsable"]
        if after is not None:
            command.append(f"--dependency=afterany:{after}")
        # Submitted from inside a job, the environment holds that job's SLURM_* variables;
        # the successor starts from the user's environment, as the first driver job did.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SLURM_", "DASKHPO_DRIVER_")) or k == "SLURM_CONF"}
        done = subprocess.run(command, input=self.job_script(), capture_output=True, text=True, env=env,
                              timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"sbatch refused the driver job {self.job_name!r} (restart {self.restart}): "
                               f"{done.stderr.strip() or done.stdout.strip()}")
        job_id = done.stdout.strip().split(";")[0]
        logger.info("queued driver job %s (%s, restart %d%s)", job_id, self.job_name, self.restart,
                    f", after job {after}" if after else "")
        return job_id


def submit(script: str | os.PathLike, args: Sequence[str] = (), **options: Any) -> str:
    """Queue the first driver job of a search script; returns its Slurm job id.

    Parameters
    ----------
    script : path
        The search script, unchanged (see :class:`DriverJob`).
    args : sequence of str
        Its command-line arguments.
    **options
        The other fields of :class:`DriverJob` (``walltime``, ``max_restarts``, ``grace``,
        ``partition``, ``account``, ``sbatch_options``, ...).

    Returns
    -------
    str
        The job id.

    Examples
    --------
    >>> daskhpo.submit("train.py", ["--trials", "500"], walltime="04:00:00",
    ...                partition="small", max_restarts=20)               # doctest: +SKIP
    '4242'
    """
    return DriverJob(os.fspath(script), tuple(args), **options).submit()


# -- inside the driver job ------------------------------------------------------------------


def _close_clusters() -> None:
    """Close the Dask clusters the script left open: their worker jobs are cancelled now."""
    try:
        from distributed.deploy.spec import SpecCluster
    except ImportError:  # pragma: no cover - distributed is a dependency
        return
    for cluster in list(getattr(SpecCluster, "_instances", ())):
        if str(getattr(cluster, "status", "")).endswith("closed"):
            continue
        try:
            cluster.close(timeout=60)
        except Exception:
            logger.exception("could not close cluster %r", cluster)


def _cancel(job_id: str, why: str) -> None:
    done = subprocess.run(["scancel", job_id], capture_output=True, text=True, timeout=60)
    if done.returncode == 0:
        logger.info("%s: successor job %s cancelled, the chain ends", why, job_id)
    else:
        logger.error("%s, but could not cancel the successor job %s: %s", why, job_id, done.stderr.strip())


def run(job: DriverJob) -> int:
    """Run one driver job (the body of ``python -m daskhpo.integrations.driver``); returns the exit status."""
    from ..engine import NoWorkersError
    from ..engine.drain import drain_requested, install_signal_handlers

    # First of all: from now on the hand-over signal drains instead of killing the process.
    install_signal_handlers({signal.SIGUSR1: job.grace, signal.SIGTERM: 0.0})
    own = os.environ.get("SLURM_JOB_ID")
    successor = None
    if own is None:
        logger.warning("not inside a Slurm job (no SLURM_JOB_ID): running the script without a successor")
    elif job.restart < job.max_restarts:
        try:
            successor = job.successor().submit(after=own)
        except (RuntimeError, ValueError, OSError, subprocess.SubprocessError) as exc:
            logger.error("could not queue a successor (%s): this driver job is the chain's last", exc)
    else:
        logger.warning("restart %d = max_restarts: no successor; should this job hand over, run "
                       "'daskhpo submit' again to go on", job.restart)
    os.environ["DASKHPO_DRIVER_RESTART"] = str(job.restart)  # read into the history's driver sessions
    if successor:
        os.environ["DASKHPO_DRIVER_SUCCESSOR"] = successor
    logger.info("driver job %s (restart %d of at most %d) runs %s %s", own, job.restart, job.max_restarts,
                job.script, " ".join(job.args))
    sys.argv = [job.script, *job.args]
    sys.path.insert(0, os.path.dirname(job.script))
    failure: BaseException | None = None
    try:
        runpy.run_path(job.script, run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            failure = exc
    except BaseException as exc:
        logger.exception("the script %s failed", job.script)
        failure = exc
    _close_clusters()
    request = drain_requested()
    if request is not None:
        if successor:
            logger.info("handed over (%s): successor job %s resumes the search", request.reason, successor)
        return 0
    if failure is None:
        if successor:
            _cancel(successor, "the search script ran to its end")
        return 0
    if isinstance(failure, NoWorkersError) and successor:
        logger.warning("the cluster failed (%s): successor job %s tries again", type(failure).__name__, successor)
    elif successor:
        _cancel(successor, f"the script failed ({type(failure).__name__})")
    code = failure.code if isinstance(failure, SystemExit) else 1
    return code if isinstance(code, int) else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m daskhpo.integrations.driver JOB_JSON``: what a driver job's script executes."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m daskhpo.integrations.driver JOB_JSON (written by 'daskhpo submit')", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(DriverJob.from_json(argv[0]))


if __name__ == "__main__":  # pragma: no cover - runs in the driver job
    sys.exit(main())
