"""Faulty-node quarantine: judge workers on which trials keep breaking.

A GPU that went bad (``CUDA error: an illegal memory access``), a node without its
scratch file system: every trial sent there breaks, within seconds, and without this
module the run stops with :class:`~daskhpo.engine.loop.TooManyBrokenTrials` while healthy
workers idle.  The rule, algorithm-agnostic:

* A ``broken`` outcome (not ``timeout``, not ``lost``) on a worker not yet judged is
  **held**: neither recorded nor told to the optimizer.  Up to ``after`` held trials
  leave their slot to another trial; more occupy slots (so a fast-failing worker cannot
  churn through the search while it waits for its judgement).
* A finished (completed or pruned) trial on that worker judges it **healthy**: what it
  held is recorded ``broken`` (the configurations' fault) and its streak starts again.
* Once ``after`` distinct trials in a row broke on it while some *other* worker finished
  a trial in this run, it is a **suspect**: its held trials run again, one more attempt
  each (not counted in ``max_broken``), restricted (loosely) to the other workers.
* As soon as one of them finishes on another worker, the suspect is **quarantined**: the
  executor retires it (:meth:`Executor.quarantine`), and what broke there meanwhile runs
  again elsewhere too.  If they all break elsewhere as well, the configurations are at
  fault: recorded ``broken``, and the worker is no longer suspect (so an objective that
  fails for some values never retires a healthy worker).
* A streak whose error (its last line) also broke trials on other workers is the
  configurations' fault at once: recorded ``broken``, no suspicion.
* When nothing runs any more but trials are held (every slot held, or the run's end),
  the held trials of workers that may become suspect are run again; the others are
  recorded ``broken``.  So a configuration (or objective) that fails on every node is
  still counted, and ``max_broken`` stops the run as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from ..records import FINISHED, TrialRecord

__all__ = ["Quarantine", "worker_host"]

logger = logging.getLogger(__name__)


def worker_host(address: str) -> str:
    """The host of a worker address (``tcp://10.0.0.5:4321`` -> ``10.0.0.5``)."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    return parsed.hostname or address


def _last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else ""


@dataclass
class _Held:
    job: Any
    record: TrialRecord
    checkpoint: Any


@dataclass
class _WorkerState:
    held: list[_Held] = field(default_factory=list)


class Quarantine:
    """The judgement of workers during one run.

    Parameters
    ----------
    after : int or None
        Distinct trials in a row broken on one worker (while others succeed) before it is
        quarantined; ``None`` turns quarantine off (every outcome is recorded at once).
    clock : callable, default time.time
        The time of a suspicion or a quarantine (the loop's state machine passes the time
        of the event it handles: it reads no clock).
    """

    def __init__(self, after: int | None, clock: Callable[[], float] = time.time) -> None:
        if after is not None and (isinstance(after, bool) or not isinstance(after, int) or after < 1):
            raise ValueError(f"quarantine_after must be a positive integer or None, got {after!r}")
        self.after = after
        self._clock = clock
        self._workers: dict[str, _WorkerState] = {}
        #: workers on which a trial finished in this run
        self._healthy: set[str] = set()
        #: quarantined worker address -> its record
        self.quarantined: dict[str, dict[str, Any]] = {}
        #: suspect worker -> its record to be, with ``pending``: its trials running elsewhere
        self.suspects: dict[str, dict[str, Any]] = {}
        #: last error line of broken outcomes -> workers it happened on
        self._errors: dict[str, set[str]] = {}

    @property
    def held(self) -> int:
        """How many broken outcomes wait for their worker's judgement."""
        return sum(len(s.held) for s in self._workers.values())

    def judge(self, job: Any, record: TrialRecord, checkpoint: Any) -> tuple[list[tuple[Any, TrialRecord, Any]], list[tuple[Any, str]]]:
        """Take one finished attempt.

        Returns
        -------
        ready : list of (job, record, checkpoint)
            To record now, in this order.
        again : list of (job, worker)
            Held trials to run again away from ``worker`` (a suspect, or quarantined).
        """
        worker = record.worker
        if self.after is None or worker is None:
            return [(job, record, checkpoint)], []
        source = getattr(job, "quarantined_from", None)
        if record.status in FINISHED:
            again = []
            if source in self.suspects and source != worker:
                again += self._confirm(source)  # a trial that broke there finished elsewhere
            if worker in self.suspects:
                logger.info("suspect worker %s finished a trial: not quarantined", worker)
                del self.suspects[worker]
            self._healthy.add(worker)
            state = self._workers.pop(worker, None)
            released = [] if state is None else [(h.job, h.record, h.checkpoint) for h in state.held]
            if released:
                logger.info("worker %s finished a trial: the %d trials that broke there are the configurations' "
                            "fault (recorded broken)", worker, len(released))
            for other in list(self._workers):  # held ones waiting for a success elsewhere
                again += self._decide(other)[1]
            return [*released, (job, record, checkpoint)], again
        if record.status != "broken":
            if source in self.suspects:  # a timeout says nothing of the worker
                self.suspects[source]["pending"].discard(job.plan.trial)
                if not self.suspects[source]["pending"]:
                    del self.suspects[source]
            return [(job, record, checkpoint)], []
        self._errors.setdefault(_last_line(record.error), set()).add(worker)
        if worker in self.quarantined:
            # It was running on the worker when that was quarantined.
            self.quarantined[worker]["trials"].append(job.plan.trial)
            return [], [(job, worker)]
        if source is not None and source != worker:
            # Broke on a second node: the configuration's fault.
            entry = self.suspects.get(source)
            if entry is not None:
                entry["pending"].discard(job.plan.trial)
                if not entry["pending"]:
                    logger.info("worker %s: the trials that broke there broke elsewhere too: not quarantined",
                                source)
                    del self.suspects[source]
            return [(job, record, checkpoint)], []
        state = self._workers.setdefault(worker, _WorkerState())
        if any(h.job.plan.trial == job.plan.trial for h in state.held):
            return [(job, record, checkpoint)], []
        state.held.append(_Held(job, record, checkpoint))
        return self._decide(worker)

    def _elsewhere(self, worker: str) -> bool:
        return any(w != worker and w not in self.quarantined for w in self._healthy)

    def _decide(self, worker: str) -> tuple[list, list]:
        """Held trials of ``worker``: wait, release as broken, or run them elsewhere (suspect)."""
        state = self._workers.get(worker)
        if worker in self.suspects or state is None or len(state.held) < self.after or not self._elsewhere(worker):
            return [], []
        shared = [h for h in state.held if self._errors.get(_last_line(h.record.error), set()) - {worker}]
        if shared:
            # The same error broke trials on other workers too: the configurations' fault.
            self._workers.pop(worker)
            logger.info("worker %s: %d trials in a row broke, with an error also seen on other workers (%s): "
                        "recorded broken, no quarantine", worker, len(state.held),
                        _last_line(shared[-1].record.error))
            return [(h.job, h.record, h.checkpoint) for h in state.held], []
        self._workers.pop(worker)
        trials = [h.job.plan.trial for h in state.held]
        self.suspects[worker] = {
            "worker": worker,
            "host": worker_host(worker),
            "when": self._clock(),
            "why": _last_line(state.held[-1].record.error),
            "trials": list(trials),
            "pending": set(trials),
        }
        logger.warning("worker %s (host %s): %d trials in a row broke there (%s) while trials finish elsewhere; "
                       "running trials %s again on other workers: if one finishes there, %s is quarantined",
                       worker, worker_host(worker), len(trials), self.suspects[worker]["why"], trials, worker)
        return [], [(h.job, worker) for h in state.held]

    def _confirm(self, worker: str) -> list[tuple[Any, str]]:
        """Quarantine a suspect: one of its trials finished elsewhere."""
        entry = self.suspects.pop(worker)
        del entry["pending"]
        entry["when"] = self._clock()
        state = self._workers.pop(worker, None)
        held = [] if state is None else state.held
        entry["trials"] += [h.job.plan.trial for h in held]
        self.quarantined[worker] = entry
        logger.warning(
            "quarantining worker %s (host %s): trials broke there (%s) and finish on other workers; no further "
            "trial goes to it; trials %s run again elsewhere", worker, entry["host"], entry["why"], entry["trials"],
        )
        return [(h.job, worker) for h in held]

    def settle(self) -> tuple[list[tuple[Any, TrialRecord, Any]], list[Any]]:
        """Nothing runs: quarantine who may be, record the rest of what is held as broken."""
        ready: list = []
        again: list = []
        for worker in list(self._workers):
            r, a = self._decide(worker)
            ready += r
            again += a
        for worker, state in list(self._workers.items()):
            if state.held:
                logger.info("worker %s: %d broken trials held without a verdict are recorded broken",
                            worker, len(state.held))
            ready += [(h.job, h.record, h.checkpoint) for h in state.held]
        self._workers.clear()
        return ready, again

    def release(self) -> list[tuple[Any, TrialRecord, Any]]:
        """Everything held, to record as broken (the run ends)."""
        ready = [(h.job, h.record, h.checkpoint) for s in self._workers.values() for h in s.held]
        self._workers.clear()
        self.suspects.clear()
        return ready
