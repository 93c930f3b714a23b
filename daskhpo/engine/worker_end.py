"""When a Dask worker ends, and what it does when told to leave (Slurm's walltime, preemption).

The worker/Slurm side of workers with lifetimes (the engine's side, admission and soft
lifetimes, is :mod:`daskhpo.engine.lifetimes`):

* :func:`worker_end_time`: the epoch time at which this worker's process will be gone:
  ``SLURM_JOB_END_TIME`` where Slurm sets it (not Debian's 22.05 in a batch job: checked),
  else the job's end as ``squeue -j $SLURM_JOB_ID -o %e`` shows it (its start plus its
  time limit), else the worker's Dask ``--lifetime``, else ``None``.  The earliest of those
  known wins.  Never raises; the subprocess has a bounded timeout.
* :class:`EndWatch` (on the client, used by :class:`~daskhpo.engine.dask_executor.DaskExecutor`):
  registers the two plugins below, asks each new worker for its end, and emits
  :class:`~daskhpo.engine.executor.WorkersChanged` whenever the set of workers or an end
  changes.
* :class:`LeavingWorker` (a worker plugin) and :class:`LeavingNanny` (a nanny plugin),
  active only inside a Slurm job (``SLURM_JOB_ID`` set): on ``SIGTERM`` (a plain ``scancel``,
  a preemption, the time limit: Slurm sends it to every process of the job, then ``SIGKILL``
  after ``KillWait``) or on the warning signal (``#SBATCH --signal=B:USR1@120``, which only
  the batch shell receives: :class:`daskhpo.SlurmGPUCluster` ``exec`` s the worker command so
  that it is the nanny, which forwards it to its worker process), the worker

  1. asks every running trial to checkpoint and stop
     (:func:`daskhpo.reporting.preempt_trials`): each stops at its next report and goes
     back to the engine ``preempted`` with that checkpoint;
  2. takes no new task (its status becomes ``closing_gracefully``, so the scheduler sends it
     nothing) and tells the client that it ends now (an event ``{"worker", "end", "reason"}``
     on the run's topic, the one its reports use);
  3. closes itself and its nanny (so the job ends) once it runs no task and holds no result.

  The nanny keeps Dask's own ``SIGTERM`` handler (close at once, killing the running trial)
  for a second ``SIGTERM``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from distributed import Client
from distributed.diagnostics.plugin import NannyPlugin, WorkerPlugin

from ..reporting import preempt_trials
from .executor import WorkersChanged

__all__ = ["worker_end_time", "parse_slurm_time", "EndWatch", "LeavingWorker", "LeavingNanny", "SIGNALS"]

logger = logging.getLogger(__name__)

#: the warning signals a job may be sent before its end (``#SBATCH --signal=B:<name>@<seconds>``)
SIGNALS = ("USR1", "USR2")
#: a job without a time limit shows an end a year after its start: not an end
_NO_LIMIT_S = 300 * 86400
_UNKNOWN = {"", "unknown", "n/a", "none", "invalid"}


def parse_slurm_time(text: str) -> float | None:
    """The epoch time of a Slurm time stamp (``2026-12-02T12:59:28``, local time), or ``None``.

    ``Unknown``, ``N/A``, ``NONE`` and anything unreadable are ``None``.  Slurm prints
    times in the local time zone of the command that prints them; this is read in the
    same process's zone (``time.mktime``), so the zone never matters.
    """
    text = text.strip()
    if text.lower() in _UNKNOWN:
        return None
    try:
        return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))
    except (ValueError, OverflowError):
        return None


def _slurm_end(environ: Mapping[str, str], timeout: float) -> float | None:
    raw = environ.get("SLURM_JOB_END_TIME", "").strip()
    if raw:
        try:
            return float(int(raw))
        except ValueError:
            logger.debug("SLURM_JOB_END_TIME=%r is not an epoch time", raw)
    job = environ.get("SLURM_JOB_ID", "").strip()
    if not job:
        return None
    try:
        done = subprocess.run(["squeue", "-h", "-j", job, "-o", "%e"], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        logger.debug("could not ask squeue for the end of job %s: %s", job, exc)
        return None
    lines = done.stdout.split()
    if done.returncode != 0 or len(lines) != 1:
        logger.debug("squeue -j %s -o %%e: rc=%s %r %r", job, done.returncode, done.stdout, done.stderr)
        return None
    end = parse_slurm_time(lines[0])
    if end is not None and end - time.time() > _NO_LIMIT_S:
        return None
    return end


def worker_end_time(
    environ: Mapping[str, str] | None = None,
    *,
    lifetime: float | None = None,
    started: float | None = None,
    timeout: float = 5.0,
) -> float | None:
    """The epoch time (``time.time()``'s scale) at which this worker ends, or ``None``.

    Parameters
    ----------
    environ : mapping, optional
        The environment to read (default ``os.environ``): ``SLURM_JOB_END_TIME`` (an epoch
        time, set by recent Slurm releases), else ``SLURM_JOB_ID`` (its end is asked of
        ``squeue``).
    lifetime : float, optional
        The worker's Dask lifetime in seconds (``dask worker --lifetime``, staggered), counted
        from ``started``.
    started : float, optional
        When the worker started (epoch); default now.
    timeout : float
        Seconds ``squeue`` may take.

    Returns
    -------
    float or None
        The earliest of the ends known; ``None`` when none is (never raises).
    """
    environ = os.environ if environ is None else environ
    ends = []
    try:
        ends.append(_slurm_end(environ, timeout))
    except Exception:  # never let this break a worker
        logger.debug("could not read the Slurm job's end", exc_info=True)
    if lifetime:
        ends.append((time.time() if started is None else started) + float(lifetime))
    known = [e for e in ends if e is not None]
    return min(known) if known else None


def _dask_lifetime(worker: Any) -> tuple[float | None, float | None]:
    """The worker's Dask lifetime (seconds) and its process's start (a little before the worker's)."""
    lifetime = getattr(worker, "lifetime", None)
    if not lifetime:
        return None, None
    try:
        import psutil

        return float(lifetime), psutil.Process().create_time()
    except Exception:
        return float(lifetime), None


def _signal_number(name: str) -> signal.Signals:
    name = name.upper().removeprefix("SIG")
    return signal.Signals[f"SIG{name}"]


def _in_slurm_job() -> bool:
    return bool(os.environ.get("SLURM_JOB_ID"))


def _can_handle_signals() -> bool:
    return threading.current_thread() is threading.main_thread() and _in_slurm_job()


#: this process's worker plugin (what :func:`_end_here` reads)
_PLUGIN: LeavingWorker | None = None


class LeavingWorker(WorkerPlugin):
    """On ``SIGTERM`` or the warning signal: preempt the trials, take nothing new, then leave.

    Only in a Slurm job, and only where the worker's event loop runs on the main thread
    (a worker process started by a nanny); elsewhere it only knows the worker's end.
    """

    name = "daskhpo-leaving-worker"
    idempotent = False

    def __init__(self, warning_signal: str | None = "USR1", topic: str | None = None) -> None:
        self.warning_signal = warning_signal
        #: where the worker announces that it leaves (the run's topic; each run registers anew)
        self.topic = topic
        self.end: float | None = None
        self.leaving: float | None = None
        self._known = False
        self._previous: dict[int, Any] = {}

    def setup(self, worker: Any) -> None:
        global _PLUGIN
        self.worker = worker
        _PLUGIN = self
        if not _can_handle_signals():
            return
        numbers = {signal.SIGTERM}
        if self.warning_signal:
            numbers.add(_signal_number(self.warning_signal))
        for number in numbers:
            self._previous[number] = signal.signal(number, self._on_signal)
        logger.info("daskhpo: %s preempts its trials on %s", worker.address,
                    ", ".join(sorted(signal.Signals(n).name for n in numbers)))

    def teardown(self, worker: Any) -> None:
        global _PLUGIN
        for number, previous in self._previous.items():
            if signal.getsignal(number) == self._on_signal:
                signal.signal(number, previous)
        self._previous = {}
        if _PLUGIN is self:
            _PLUGIN = None

    async def end_time(self) -> float | None:
        """This worker's end (asked of Slurm once, in a thread: never blocks the event loop)."""
        if not self._known:
            lifetime, started = _dask_lifetime(self.worker)
            end = await asyncio.get_running_loop().run_in_executor(
                None, lambda: worker_end_time(lifetime=lifetime, started=started))
            if not self._known:
                self.end, self._known = end, True
        return self.end

    def _on_signal(self, number: int, frame: Any) -> None:
        # A signal handler: only hand over to the event loop (no logging, no locks here).
        self.worker.loop.add_callback(self.leave, signal.Signals(number).name)

    def leave(self, reason: str) -> int:
        """Preempt the running trials and stop taking tasks; returns how many trials were asked."""
        from distributed.core import Status

        asked = preempt_trials()
        if self.leaving is not None:
            return asked
        self.leaving = self.end = time.time()
        self._known = True
        logger.warning("daskhpo: worker %s received %s: %d running trial(s) asked to checkpoint and stop; "
                       "it takes no new task and leaves once idle", self.worker.address, reason, asked)
        if self.worker.status == Status.running:
            self.worker.status = Status.closing_gracefully  # the scheduler sends it nothing new
        try:
            if self.topic is not None:
                self.worker.log_event(self.topic, {"worker": self.worker.address, "end": self.end, "reason": reason})
        except Exception:
            logger.debug("could not announce the end of %s", self.worker.address, exc_info=True)
        self.worker.loop.add_callback(self._close_when_idle)
        return asked

    async def _close_when_idle(self) -> None:
        busy = ("executing", "long-running", "memory", "cancelled", "resumed")
        while any(ts.state in busy for ts in self.worker.state.tasks.values()):
            await asyncio.sleep(0.05)
        logger.info("daskhpo: worker %s is idle after its preemption: closing", self.worker.address)
        await self.worker.close(nanny=True, reason="daskhpo-worker-ending")


#: the nanny plugins of this process (a job may run several nannies in one process: ``--nworkers``)
_NANNIES: list[LeavingNanny] = []
#: the handlers the process-level ones replaced, by signal number (restored when the last nanny goes)
_REPLACED: dict[int, Any] = {}
#: ``SIGTERM`` received so far by this process
_TERMS = 0


def _to_every_nanny(number: int, frame: Any) -> None:
    """The process's handler of the warning signal: forwarded to every nanny's worker process."""
    for nanny in list(_NANNIES):
        nanny._forward(number, frame)


def _term_every_nanny(number: int, frame: Any) -> None:
    """The process's ``SIGTERM`` handler: the first is forwarded to every worker; a second is Dask's."""
    global _TERMS
    _TERMS += 1
    if _TERMS == 1:
        _to_every_nanny(number, frame)  # Slurm signals them too; a kill by hand may not
        return
    previous = _REPLACED.get(signal.SIGTERM)
    if callable(previous):
        previous(number, frame)


def _install(number: int, handler: Any) -> None:
    current = signal.getsignal(number)
    if current is not handler:
        _REPLACED.setdefault(number, current)
        signal.signal(number, handler)


class LeavingNanny(NannyPlugin):
    """The nanny side: forward the warning signal to the worker process; let it close itself on ``SIGTERM``.

    Active only in a Slurm job, in a nanny started by Dask's command line (``dask worker``,
    ``python -m distributed.cli.dask_worker``), whose ``SIGTERM`` handler it wraps: the first
    ``SIGTERM`` reaches the worker process (which preempts its trials and then closes itself
    and this nanny); a second one closes the nanny at once, as Dask would have.  A signal
    handler belongs to the process, not to one nanny: one process-level handler per signal
    forwards it to the worker of every nanny of the process (``dask worker --nworkers 2``
    runs two nannies in one process).
    """

    name = "daskhpo-leaving-nanny"

    def __init__(self, warning_signal: str | None = "USR1") -> None:
        self.warning_signal = warning_signal

    def setup(self, nanny: Any) -> None:
        self.nanny = nanny
        if not _can_handle_signals():
            return
        _NANNIES.append(self)
        term = signal.getsignal(signal.SIGTERM)
        if term is _term_every_nanny or getattr(term, "__module__", None) == "distributed._signals":
            _install(signal.SIGTERM, _term_every_nanny)
        if self.warning_signal:
            _install(_signal_number(self.warning_signal), _to_every_nanny)

    def teardown(self, nanny: Any) -> None:
        if self not in _NANNIES:
            return
        _NANNIES.remove(self)
        if _NANNIES:
            return
        for number, previous in _REPLACED.items():  # the last nanny of the process: as it was
            if signal.getsignal(number) in (_to_every_nanny, _term_every_nanny):
                signal.signal(number, previous)
        _REPLACED.clear()

    def _forward(self, number: int, frame: Any) -> None:
        pid = getattr(self.nanny, "pid", None)
        if pid:
            try:
                os.kill(pid, number)
            except OSError:
                pass


def _process_start() -> float | None:
    """When this worker's process started (epoch), or ``None`` (without psutil)."""
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:
        return None


async def _end_here(dask_worker: Any) -> tuple[float | None, float | None]:
    """On a worker (``Client.run``): its end (from its plugin, or computed without one) and its process's start."""
    plugin = _PLUGIN if _PLUGIN is not None and _PLUGIN.worker is dask_worker else None
    if plugin is not None:
        return await plugin.end_time(), _process_start()
    lifetime, started = _dask_lifetime(dask_worker)
    end = await asyncio.get_running_loop().run_in_executor(
        None, lambda: worker_end_time(lifetime=lifetime, started=started))
    return end, _process_start()


class EndWatch:
    """The client side: each connected worker's end, and :class:`WorkersChanged` events when they change.

    Parameters
    ----------
    client : distributed.Client
    emit : callable
        Called with each :class:`WorkersChanged` (from the watchdog's or the client's thread).
    topic : str
        The run's topic, on which a leaving worker announces it (the executor, subscribed to
        it, passes such messages to :meth:`leaving`).
    warning_signal : str or None
        The signal the jobs receive ahead of their end (``"USR1"``; ``None``: only ``SIGTERM``).
    """

    def __init__(self, client: Client, emit: Callable[[WorkersChanged], None], topic: str,
                 warning_signal: str | None = "USR1") -> None:
        self.client = client
        self.emit = emit
        self.topic = topic
        self.warning_signal = warning_signal
        self.ends: dict[str, float | None] = {}
        #: worker -> when its process started (its whole life is from then to its end)
        self.starts: dict[str, float] = {}
        self._lock = threading.Lock()
        self._sent = False

    def open(self) -> None:
        """Register the plugins on every worker, present and future (replacing an earlier run's)."""
        try:
            self.client.register_plugin(LeavingWorker(self.warning_signal, self.topic))
            self.client.register_plugin(LeavingNanny(self.warning_signal))
        except Exception as exc:  # never let this stop a run: it only loses the hand-over
            logger.warning("could not register daskhpo's worker-end plugins: %s", exc)

    def update(self, workers: Iterable[str]) -> None:
        """The workers connected now (from the executor's watchdog): ask new ones their end."""
        workers = set(workers)
        with self._lock:
            new = sorted(workers - set(self.ends))
            gone = set(self.ends) - workers
        asked: dict[str, float | None] = {}
        if new:
            try:
                asked = self.client.run(_end_here, workers=new, on_error="return")
            except Exception as exc:  # workers leaving while asked
                logger.debug("could not ask workers %s for their end: %s", new, exc)
        with self._lock:
            for worker in gone:
                self.ends.pop(worker, None)
            for worker in gone:
                self.starts.pop(worker, None)
            for worker in new:
                end, start = answer if isinstance(answer := asked.get(worker), tuple) else (None, None)
                self.ends[worker] = end if isinstance(end, float) else None
                if isinstance(start, float):
                    self.starts[worker] = start
            if new or gone:
                self._send()

    def leaving(self, msg: Mapping[str, Any]) -> None:
        """A worker's announcement that it leaves (``{"worker", "end", "reason"}``, on the client's loop)."""
        with self._lock:
            self.ends[msg["worker"]] = float(msg["end"])
            self._sent = True  # a leaving worker is news even if no end was known before
            self._send()

    def _send(self) -> None:
        # Only once some end is known: executors that know no end send nothing.
        if self._sent or any(end is not None for end in self.ends.values()):
            self._sent = True
            self.emit(WorkersChanged(dict(self.ends), dict(self.starts)))
