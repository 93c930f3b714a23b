"""The executor of a Dask client: trials as futures, reports on a pub/sub topic.

* **Submission**: ``client.submit(run_attempt, ..., key=<unique>, pure=False,
  resources=<the trial's request>)`` (:mod:`daskhpo.engine.resources`); completions come
  from one :class:`distributed.as_completed` (results gathered on the client's event
  loop), forwarded by a pump thread to the loop's inbox.
* **Exactly once**: the pump releases each future the moment its result is taken (a
  future held while the pump waits for the next one made the scheduler recompute a
  recorded trial when its worker died later); and each attempt claims its key on the
  scheduler before its objective runs (:func:`~daskhpo.engine.worker.claim_attempt`), so
  that a task the scheduler starts again (its worker left, mid-run or after it finished)
  is refused (:class:`~daskhpo.engine.worker.AttemptLost`, a lost attempt): the loop, not
  Dask's ``allowed-failures``, decides within ``retries`` whether the trial runs again.
* **Reports and starts**: :func:`daskhpo.report` publishes on one topic per run
  (``Worker.log_event`` → ``Client.subscribe_topic``), and so does each attempt's start.
  (A second start of the same task, which the claim now refuses before it is announced,
  would become a :class:`~daskhpo.engine.executor.Rerun` event.)  A prune is pushed to the
  trial's worker with ``Client.run`` (see :mod:`daskhpo.reporting`).
* **Watchdog**: a thread that emits :class:`~daskhpo.engine.executor.NoWorkers` once no
  worker has been connected for ``worker_timeout`` seconds (jobs that never start, or
  every job gone at its walltime), or once the scheduler has been unreachable that long
  (its process killed: ``NoWorkers.scheduler`` set, the loop raises
  :class:`SchedulerLostError`).  While the scheduler is unreachable the pump forwards no
  cancellation: the client cancels every future when it gives up reconnecting, and those
  trials are not lost work to retry but a run to resume.
* **Workers' ends**: the watchdog also asks each new worker when it ends, and a worker
  told to leave (Slurm's ``SIGTERM`` or warning signal) announces it; both become
  :class:`~daskhpo.engine.executor.WorkersChanged` events (:mod:`daskhpo.engine.worker_end`,
  whose plugins this registers on every worker, replacing an earlier run's).

Nothing here blocks the client's event loop: handlers only put events into a queue.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from distributed import Client, Future, as_completed

from ..pickling import PickledObjective, check_picklable, classify_failure, failure_reason
from ..reporting import release_trial, stop_trial
from .errors import NoWorkersError, SchedulerLostError
from .executor import Completed, ExecutorEvent, Failed, NoWorkers, Reported, Rerun, Started, Wake
from .local_workers import shield_local_workers
from .resources import Request, ResourcesSpec, TrialResources, largest, slots_on
from .worker import CANCELLED, CLAIMS, TrialTask, run_attempt
from .worker_end import EndWatch

__all__ = ["DaskExecutor", "NoWorkersError", "SchedulerLostError"]

logger = logging.getLogger(__name__)


def _is_slurm(cluster: Any) -> bool:
    return any(c.__name__ == "SLURMCluster" for c in type(cluster).__mro__) and hasattr(cluster, "_job_kwargs")


def exclude_from_new_jobs(cluster: Any, host: str) -> None:
    """Add ``host`` to ``--exclude`` of the new jobs of a dask-jobqueue ``SLURMCluster``.

    Jobs already running or queued keep their script; ``scale`` and ``adapt`` submit the
    new ones with it (``cluster.job_script()`` shows it).  The cluster's job options are
    shared by every job it creates from now on (``_job_kwargs``, dask-jobqueue 0.8-0.9).
    """
    options = cluster._job_kwargs
    directives = list(options.get("job_extra_directives") or [])
    hosts: list[str] = []
    kept = []
    for directive in directives:
        if directive.startswith(("--exclude=", "-x ")):
            hosts += [h for h in directive.split("=", 1)[-1].split(" ", 1)[-1].split(",") if h]
        else:
            kept.append(directive)
    if host not in hosts:
        hosts.append(host)
    options["job_extra_directives"] = [*kept, f"--exclude={','.join(hosts)}"]
    logger.warning("node %s excluded from the new jobs of %s (--exclude=%s)", host, type(cluster).__name__,
                   ",".join(hosts))


class _Relay:
    """The topic handler of one run; detached (``target=None``) when the run ends.

    distributed keeps a client's handler after unsubscribing: detached, it holds nothing
    of the run.
    """

    def __init__(self, target: Callable[[Any], None]) -> None:
        self.target: Callable[[Any], None] | None = target

    def __call__(self, event: Any) -> None:
        if self.target is not None:
            self.target(event)


class DaskExecutor:
    """Runs trial attempts as tasks of a Dask client.

    Parameters
    ----------
    client : distributed.Client
    fn : callable
        The objective, called as ``fn(**params, **fn_kwargs)`` on a worker.
    fn_kwargs : dict, optional
        Fixed keyword arguments of every call.
    resources : dict or callable, optional
        Dask resource annotation of every trial, e.g. ``{"GPU": 1}``, or
        ``resources(params) -> dict``, one per configuration (see
        :mod:`daskhpo.engine.resources` and :meth:`resources_for`).
    trial_timeout : float, optional
        Seconds, from its start on the worker, after which a trial is interrupted.
    worker_timeout : float
        Seconds without any connected worker before :meth:`slots` raises
        :class:`NoWorkersError` or a :class:`~daskhpo.engine.executor.NoWorkers` event.
    """

    #: whether it sends :class:`~daskhpo.engine.executor.WorkersChanged` (and so takes ``submit(workers=)``)
    knows_ends = True

    def __init__(
        self,
        client: Client,
        fn: Callable[..., Any],
        *,
        fn_kwargs: Mapping[str, Any] | None = None,
        resources: ResourcesSpec = None,
        trial_timeout: float | None = None,
        worker_timeout: float = 60.0,
    ) -> None:
        self.client = client
        if trial_timeout is not None and not trial_timeout > 0:
            raise ValueError(f"trial_timeout must be positive seconds, got {trial_timeout!r}")
        self.fn = fn
        self.fn_kwargs = dict(fn_kwargs or {})
        #: each trial's request (fixed or per configuration)
        self.requests = TrialResources(resources)
        #: the fixed request of every trial (``None``: none, or one per configuration)
        self.resources = self.requests.fixed
        self.trial_timeout = trial_timeout
        self.worker_timeout = worker_timeout
        self.topic = f"daskhpo-events-{uuid.uuid4().hex}"
        self._futures: dict[str, Future] = {}
        self._opened = False
        #: workers quarantined (retired) by this executor
        self._quarantined: set[str] = set()
        #: Slurm node names excluded from the cluster's new jobs after a quarantine
        self.excluded_hosts: list[str] = []
        #: what the scheduler's identity() takes to list every worker (see _worker_info)
        self._identity_args: dict[str, int] = {"n_workers": -1}

    # -- sizing ------------------------------------------------------------------------
    def _worker_info(self) -> dict[str, dict]:
        """Address -> info of every worker, asked of the scheduler now.

        Not ``client.scheduler_info()``: that returns the client's cached identity, which
        its periodic refresh (workers' totals only, an empty ``"workers"``) may overwrite
        between the fetch and the read; a run then saw no worker at all.
        """
        try:
            identity = self.client.sync(self.client.scheduler.identity, **self._identity_args)
        except TypeError:
            if not self._identity_args:
                raise
            # distributed before 2025.3 lists every worker and takes no n_workers: asked once
            self._identity_args = {}
            identity = self.client.sync(self.client.scheduler.identity)
        return dict(identity["workers"])

    def _workers(self) -> list[dict]:
        return list(self._worker_info().values())

    def _fitting_slots(self) -> int:
        # Requests per configuration are unknown before their trials are suggested: every
        # worker's threads count (trials that do not fit yet wait in the scheduler's queue).
        return sum(slots_on(self.resources, w.get("resources", {}), w["nthreads"]) for w in self._workers())

    def resources_for(self, params: Mapping[str, Any], trial: int | None = None) -> Request | None:
        """The request of the trial with ``params``, checked against the connected workers
        (:meth:`~daskhpo.engine.resources.TrialResources.checked`: ValueError, NoWorkersError).

        Called by the run when it plans a trial (so that a bad request ends the run before
        the trial is journaled or submitted) and by :meth:`submit` for each attempt.
        """
        return self.requests.checked(params, trial, self._declared_resources)

    def _declared_resources(self) -> dict[str, dict]:
        return {address: dict(w.get("resources", {})) for address, w in self._worker_info().items()}

    def slots(self) -> int:
        """Trials to keep in flight: the threads of the connected workers that have the
        ``resources`` (as many as those let run at once), plus one in ten of them queued ahead.
        With resources per configuration: every connected worker's threads (a request is
        only known once its trial is suggested; trials that do not fit yet wait in the
        scheduler's queue).  ``workon(n_workers=...)`` overrides it.

        A queued trial waits on its worker (Dask sends a worker up to 10 % more tasks than
        it has threads, its ``worker-saturation``) and starts the moment a thread frees,
        instead of after a round trip through the client: with 64 threads and ASHA's short
        pruned trials that took utilization from 0.87 to 0.93-0.95 here
        (``benchmarks/results/utilization.md``).  Fewer than ten threads queue nothing.

        Waits up to ``worker_timeout`` for a first worker.

        Raises
        ------
        NoWorkersError
            No worker connected in time, or none has the resources.
        """
        if not self._workers():
            logger.info("No Dask worker connected yet: waiting up to %.0f s", self.worker_timeout)
            try:
                self.client.wait_for_workers(1, timeout=self.worker_timeout)
            except TimeoutError:
                raise NoWorkersError(
                    f"no Dask worker connected within {self.worker_timeout:.0f} s; check that "
                    "the cluster's jobs start (e.g. squeue, the job logs), or pass n_workers= "
                    "so that an adaptive cluster sees queued trials and scales up"
                ) from None
        slots = self._fitting_slots()
        if slots < 1:
            address, declared = largest(self.resources, self._declared_resources())
            raise NoWorkersError(f"no connected worker has the resources {self.resources}; the largest, "
                                 f"{address}, has {declared or 'no resources'}")
        return slots + slots // 10

    # -- a run -------------------------------------------------------------------------
    def open(self) -> None:
        """Check that the objective can travel, subscribe to the run's topic, start the threads.

        Raises
        ------
        daskhpo.pickling.UnpicklableObjective
            Naming the objective and, where it can be found, what in it cannot be pickled.
        """
        size = check_picklable(self.fn, self.fn_kwargs)
        self._objective = PickledObjective(self.fn)  # pickled once, not with every trial
        if size > 10 * 2**20:
            logger.warning("the objective and its fixed arguments pickle to %.0f MB, sent with every trial; "
                           "scatter large data (client.scatter) and pass the future instead", size / 2**20)
        self._inbox: queue.SimpleQueue[ExecutorEvent] = queue.SimpleQueue()
        self._futures, self._starts = {}, {}
        self._closed = threading.Event()
        self._wake = threading.Event()
        self._timers: list[threading.Timer] = []
        self._scheduler_lost = threading.Event()
        self._scheduler_address = getattr(self.client.scheduler, "address", None) or str(self.client)
        self._completions = as_completed(loop=self.client.loop, with_results=True, raise_errors=False)
        # One topic per run (not per trial): the scheduler keeps a bounded log per topic.
        self._relay = _Relay(self._on_topic)
        self.client.subscribe_topic(self.topic, self._relay)
        shield_local_workers(self.client)  # Ctrl-C stops the search, not each worker process noisily
        # Each worker's end (its job's walltime, a preemption): WorkersChanged events, unless
        # this executor opts out of walltime-aware admission (the plugins still preempt).
        emit = self._inbox.put if self.knows_ends else (lambda event: None)
        self._ends = EndWatch(self.client, emit, self.topic,
                              getattr(getattr(self.client, "cluster", None), "preempt_signal", "USR1"))
        self._ends.open()
        self._pump_thread = threading.Thread(target=self._pump, name="daskhpo-completions", daemon=True)
        self._pump_thread.start()
        self._watch_thread = threading.Thread(target=self._watch, name="daskhpo-worker-watchdog", daemon=True)
        self._watch_thread.start()
        self._opened = True

    def submit(self, task: TrialTask, avoid: str | None = None, workers: tuple[str, ...] | None = None) -> None:
        """Submit one attempt as a task with the attempt's key.

        ``avoid``: a worker it should not run on.  The task is restricted, loosely, to the
        other connected workers (``allow_other_workers=True``: should they all leave, it
        runs anywhere).  ``workers``: it runs only on one of these (strictly:
        ``allow_other_workers=False``; the loop's walltime-aware admission, which names the
        workers a trial fits on before their end).
        """
        task = replace(task, topic=self.topic, resources=self.resources_for(task.params, task.trial))
        restrict: dict[str, Any] = {}
        if workers is not None:
            restrict = {"workers": [w for w in workers if w != avoid] or list(workers), "allow_other_workers": False}
        elif avoid is not None:
            others = [w for w in self._worker_info()
                      if w != avoid and w not in self._quarantined]
            if others:
                restrict = {"workers": others, "allow_other_workers": True}
        future = self.client.submit(
            run_attempt, self._objective, task, self.fn_kwargs, self.trial_timeout,
            key=task.key, pure=False, resources=task.resources, **restrict,
        )
        self._futures[task.key] = future
        self._completions.add(future)
        self._wake.set()

    def next_event(self) -> ExecutorEvent:
        """The next completion, failure, report, re-run or loss of every worker."""
        return self._inbox.get()

    def wake(self) -> None:
        """Make :meth:`next_event` return a :class:`Wake` (from any thread): suggestions are ready."""
        self._inbox.put(Wake())

    def alarm(self, delay: float) -> None:
        """Make :meth:`next_event` return a :class:`Wake` in ``delay`` seconds (a drain's deadline)."""
        timer = threading.Timer(delay, self.wake)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def cancel(self, key: str) -> None:
        """Cancel attempt ``key`` (its completion arrives as a :class:`Failed` event).

        Also writes a tombstone among the attempt's claims, without waiting: a start of the
        task that claims it afterwards refuses to run (the cancelled old attempt of a trial
        re-targeted elsewhere must not run beside the new one).
        """
        future = self._futures.get(key)
        if future is not None:
            future.cancel()
            if self.client.status == "running" and not self._scheduler_lost.is_set():
                self.client.loop.add_callback(self._tombstone, key)

    async def _tombstone(self, key: str) -> None:
        try:
            await self.client.scheduler.set_metadata(keys=[CLAIMS, self.topic, key, CANCELLED], value=CANCELLED)
        except Exception as exc:  # the client or the scheduler is closing: the run ends anyway
            logger.debug("could not mark attempt %s cancelled: %s", key, exc)

    def stop(self, key: str, worker: str | None) -> None:
        """Set the stop flag of attempt ``key`` on its worker, without waiting."""
        if worker is not None:
            self.client.loop.add_callback(self._send, stop_trial, worker, key)

    def release(self, key: str, worker: str | None, step: float) -> None:
        """Let attempt ``key``, waiting for the decision on its report at ``step``, go on."""
        if worker is not None:
            self.client.loop.add_callback(self._send, release_trial, worker, key, step)

    async def _send(self, fn: Callable[..., bool], worker: str, *args: Any) -> None:
        try:
            await self.client.run(fn, *args, workers=[worker], on_error="ignore", asynchronous=True)
        except Exception as exc:  # the worker left: its trial is lost anyway
            logger.debug("could not send %s%s to %s: %s", fn.__name__, args, worker, exc)

    def quarantine(self, worker: str) -> None:
        """Retire ``worker`` from the cluster, without waiting: it gets no further task.

        ``Client.retire_workers(close_workers=True)``: the scheduler stops assigning it
        tasks at once, moves the data it holds to other workers and closes it together
        with its nanny (a nanny would otherwise restart it on the same node).  A trial
        still running there is started again elsewhere by the scheduler (a re-run).  A
        :class:`~distributed.SpecCluster` does not start it again; an adaptive cluster may
        start a *new* worker.  When the client's cluster is a
        :class:`dask_jobqueue.SLURMCluster` (e.g. :class:`daskhpo.SlurmGPUCluster`), the
        worker's node name is first asked for and added to ``--exclude`` of the cluster's
        *new* jobs (:attr:`excluded_hosts`), so that a replacement job does not land there.
        """
        self._quarantined.add(worker)
        self.client.loop.add_callback(self._retire, worker)

    def retire(self, worker: str) -> None:
        """Retire ``worker`` gracefully, without waiting (its life is nearly over: a soft lifetime).

        The loop asks only once nothing of its runs there, and admits nothing new there
        meanwhile.  ``Client.retire_workers(close_workers=True)`` as for a quarantine, but
        its node is not excluded from new jobs: an adaptive cluster starts a replacement
        worker, wherever the batch system puts it.
        """
        self.client.loop.add_callback(self._retire, worker, False)

    async def _retire(self, worker: str, exclude: bool = True) -> None:
        import asyncio
        import socket

        cluster = getattr(self.client, "cluster", None)
        if exclude and _is_slurm(cluster):
            try:
                names = await asyncio.wait_for(self.client.run(socket.gethostname, workers=[worker],
                                                               on_error="ignore", asynchronous=True), 10)
            except Exception as exc:
                names = {}
                logger.warning("could not ask quarantined worker %s for its node name: %s", worker, exc)
            if names.get(worker):
                exclude_from_new_jobs(cluster, names[worker])
                self.excluded_hosts.append(names[worker])
        try:
            await self.client.retire_workers([worker], close_workers=True, asynchronous=True)
        except Exception as exc:  # it may be gone already
            logger.warning("could not retire %s worker %s: %s", "quarantined" if exclude else "ending", worker, exc)

    def close(self) -> None:
        """Unsubscribe, stop the threads, cancel every future and hold none."""
        if not self._opened:
            return
        self._opened = False
        self._relay.target = None
        try:
            self.client.unsubscribe_topic(self.topic)
        except Exception:  # the client may be closing already
            logger.debug("could not unsubscribe from %s", self.topic, exc_info=True)
        self._closed.set()
        self._wake.set()
        for timer in self._timers:
            timer.cancel()
        for future in list(self._futures.values()):  # a copy: the pump thread pops what completes
            future.cancel()
        self._completions.clear()
        self._pump_thread.join(5)
        # Hold no future after the run, so an adaptive cluster can shrink to its minimum.
        self._futures, self._starts = {}, {}
        if self.client.status == "running" and not self._scheduler_lost.is_set():
            # The scheduler forgets the run's claims (its futures are released: no task of
            # the run starts again).  Not waited for: a closing run never waits on the network.
            self.client.loop.add_callback(self._release_claims)

    async def _release_claims(self) -> None:
        try:
            # {} and not None: a claim under way (set, then get) reads an empty run, where None
            # made the scheduler log a TypeError traceback (the claim fails either way)
            await self.client.scheduler.set_metadata(keys=[CLAIMS, self.topic], value={})
        except Exception as exc:  # the client or the scheduler is closing
            logger.debug("could not release the claims of %s: %s", self.topic, exc)

    # -- threads feeding the inbox -----------------------------------------------------
    def _pump(self) -> None:
        completions = iter(self._completions)
        while True:
            self._wake.wait()
            if self._closed.is_set():
                return
            self._wake.clear()
            # No name holds a finished future while the pump waits for the next one (a
            # ``for future, result in ...`` loop would): the scheduler keeps the result of a
            # future a client holds, and recomputes it when its worker dies.
            while (item := next(completions, None)) is not None:
                if self._closed.is_set():
                    return
                self._forward(*item)
                item = None

    def _forward(self, future: Future, result: Any) -> None:
        """Put the event of a finished future into the inbox, and release the future."""
        key, status = future.key, future.status
        future.release()  # at once: the scheduler may forget the task (and not run it again)
        self._futures.pop(key, None)
        self._starts.pop(key, None)
        if self._closed.is_set():
            # The run closed (it sets this before cancelling its futures, so a status read
            # as "cancelled" after the result came is the close's): no one reads the inbox.
            return
        # as_completed hands an error as (type, exception, traceback), a cancel as the
        # CancelledError, a result as itself: a result is forwarded whatever the status reads
        # now (a drain may have cancelled the attempt after it finished; the loop then ignores it).
        failed = isinstance(result, BaseException) or (
            isinstance(result, tuple) and len(result) == 3 and isinstance(result[1], BaseException))
        if status == "finished" or not failed:
            self._inbox.put(Completed(key, result))
            return
        if self._scheduler_lost.is_set() or self.client.status != "running":
            # Cancelled because the client lost the scheduler: the watchdog ends the
            # run; retrying here would only submit to a dead connection.
            logger.debug("not forwarding %s (%s): the scheduler is unreachable", key, status)
            return
        error = result if isinstance(result, BaseException) else result[1]
        lost = classify_failure(error) == "lost"
        self._inbox.put(Failed(key, failure_reason(error), error, lost))

    def _on_topic(self, event: tuple[float, dict]) -> None:
        # On the client's event loop thread: only counting and queueing here.
        msg = event[1]
        if "end" in msg:  # a worker leaving (daskhpo.engine.worker_end)
            self._ends.leaving(msg)
            return
        if "step" in msg:
            self._inbox.put(Reported(msg["key"], msg["trial"], msg["step"], msg["values"], msg.get("worker"),
                                     "wait" in msg))
            return
        key = msg["key"]
        self._starts[key] = self._starts.get(key, 0) + 1
        if self._starts[key] > 1 and key in self._futures:
            self._inbox.put(Rerun(key))
        elif self._starts[key] == 1 and key in self._futures:
            self._inbox.put(Started(key, msg.get("worker")))  # where it runs: that worker does not retire

    def _scheduler_reachable(self) -> bool:
        if self.client.status != "running":
            return False
        try:
            self.client.nthreads()  # raises at once when the connection is closed
        except Exception:
            return False
        return True

    def _watch(self) -> None:
        last_seen = last_contact = time.monotonic()
        had_workers = bool(self._workers())
        while not self._closed.wait(min(1.0, self.worker_timeout / 4)):
            now = time.monotonic()
            if not self._scheduler_reachable():
                if not self._scheduler_lost.is_set():
                    logger.warning("lost the connection to the Dask scheduler at %s: waiting up to %.0f s for it",
                                   self._scheduler_address, self.worker_timeout)
                    self._scheduler_lost.set()
                if now - last_contact >= self.worker_timeout or self.client.status == "closed":
                    self._inbox.put(NoWorkers(now - last_contact, scheduler=self._scheduler_address))
                    return
                continue
            if self._scheduler_lost.is_set():
                logger.warning("the Dask scheduler at %s is reachable again", self._scheduler_address)
                self._scheduler_lost.clear()
            last_contact = now
            try:
                workers = self.client.nthreads()
            except Exception:
                continue
            connected = bool(workers)
            if self.knows_ends:
                self._ends.update(workers)
            now = time.monotonic()
            if connected:
                last_seen, had_workers = now, True
                continue
            if had_workers and now - last_seen > 1.0:
                logger.warning("No Dask worker connected: waiting up to %.0f s for one", self.worker_timeout)
                had_workers = False
            if now - last_seen >= self.worker_timeout:
                self._inbox.put(NoWorkers(now - last_seen))
                return
