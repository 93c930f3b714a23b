"""Faulty-node quarantine: tell a faulty node from faulty parameters.

A GPU that went bad (``CUDA error: an illegal memory access``), a node without its
scratch file system: every trial sent there breaks, within seconds, and without this
module those broken trials would pile up while healthy workers idle.  But most broken
trials are the parameters' fault (``CUDA out of memory with 5 layers``, a loss that
diverges to NaN), and re-running them elsewhere only fails again.  The rule,
algorithm-agnostic, asks whether a worker's failures *reproduce elsewhere*:

* A ``broken`` outcome (not ``timeout``, not ``lost``) on a worker not yet judged is
  **held**: neither recorded nor told to the optimizer.  Up to ``after`` held trials
  leave their slot to another trial; more occupy slots (so a fast-failing worker cannot
  churn through the search while it waits for its judgement).
* An error is compared by its *signature*: its last line with the numbers blanked
  (``MemoryError: Unable to allocate 2.1 GiB`` and ``... 3.4 GiB`` are one signature).
* A finished (completed or pruned) trial on that worker judges it **healthy**: what it
  held is recorded ``broken`` (the parameters' fault) and its streak starts again.
* Once ``after`` distinct trials in a row broke on it while some *other* worker finished
  a trial in this run, the held trials whose signature also broke trials on a healthy
  worker (one that finished a trial) are the parameters' fault at once: recorded
  ``broken``.  If ``after`` others remain, the worker is a **suspect**: they run again,
  one more attempt each, restricted (loosely) to the other workers.
* A re-run that breaks elsewhere with the same signature *reproduces* the failure: the
  parameters are at fault, the worker is cleared (no longer suspect) and the trial is
  recorded ``broken``, counted as the objective's.
* Once every re-run ended without reproducing its failure (it finished, or broke with
  another error) the suspect is **quarantined**: the executor retires it
  (:meth:`Executor.quarantine`), and what broke there meanwhile runs again elsewhere too.
  Re-runs that time out or are lost say nothing; if none said anything, it is cleared.
* A suspect that finishes a trial itself is cleared.
* When nothing runs any more but trials are held (every slot held, or the run's end),
  the held trials of workers that may become suspect are run again; the others are
  recorded ``broken``.  So a configuration (or objective) that fails on every node is
  still counted, and ``max_broken`` judges it (see :mod:`daskhpo.engine.broken`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from ..records import FINISHED, TrialRecord

__all__ = ["Quarantine", "error_signature", "worker_host"]

logger = logging.getLogger(__name__)


def worker_host(address: str) -> str:
    """The host of a worker address (``tcp://10.0.0.5:4321`` -> ``10.0.0.5``)."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    return parsed.hostname or address


def _last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else ""


#: numbers (hex addresses, integers, decimals, exponents) blanked in an error's signature
_NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def error_signature(error: str | None) -> str:
    """What two failures must share to be "the same error": the last line, numbers blanked.

    >>> error_signature("Traceback ...\\nMemoryError: Unable to allocate 2.5 GiB for (2000, 3)")
    'MemoryError: Unable to allocate # GiB for (#, #)'
    """
    return _NUMBERS.sub("#", _last_line(error))


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
        suspected; ``None`` turns quarantine off (every outcome is recorded at once).
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
        #: suspect worker -> its record to be, with ``pending`` (trial -> the signature of
        #: its failure there, for its re-run elsewhere) and ``clean`` (re-runs that did not
        #: reproduce their failure)
        self.suspects: dict[str, dict[str, Any]] = {}
        #: error signature of broken outcomes -> workers it happened on
        self._errors: dict[str, set[str]] = {}
        #: suspects cleared because a failure reproduced elsewhere (for the logs and tests)
        self.cleared: list[str] = []

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
        again: list[tuple[Any, str]] = []
        if source in self.suspects:
            # A re-run of a suspect's trial: whether its failure reproduces here judges the suspect.
            again += self._rerun_ended(source, job.plan.trial, record)
        if record.status in FINISHED:
            if worker in self.suspects:
                logger.info("suspect worker %s finished a trial: not quarantined", worker)
                del self.suspects[worker]
            self._healthy.add(worker)
            state = self._workers.pop(worker, None)
            released = [] if state is None else [(h.job, h.record, h.checkpoint) for h in state.held]
            if released:
                logger.info("worker %s finished a trial: the %d trials that broke there are the parameters' "
                            "fault (recorded broken)", worker, len(released))
            for other in list(self._workers):  # held ones waiting for a success elsewhere
                ready, more = self._decide(other)
                released += ready
                again += more
            return [*released, (job, record, checkpoint)], again
        if record.status != "broken":
            return [(job, record, checkpoint)], again  # a timeout or a loss says nothing of the worker
        self._errors.setdefault(error_signature(record.error), set()).add(worker)
        if worker in self.quarantined:
            # It was running on the worker when that was quarantined.
            self.quarantined[worker]["trials"].append(job.plan.trial)
            return [], [*again, (job, worker)]
        if source is not None and source != worker:
            return [(job, record, checkpoint)], again  # broke elsewhere too: recorded broken
        state = self._workers.setdefault(worker, _WorkerState())
        if any(h.job.plan.trial == job.plan.trial for h in state.held):
            return [(job, record, checkpoint)], again
        state.held.append(_Held(job, record, checkpoint))
        ready, more = self._decide(worker)
        return ready, again + more

    def _rerun_ended(self, suspect: str, trial: int, record: TrialRecord) -> list[tuple[Any, str]]:
        """A re-run of ``suspect``'s ``trial`` ended: reproduced (clear it), or not (quarantine once all ended)."""
        entry = self.suspects[suspect]
        signature = entry["pending"].pop(trial, None)
        if signature is None:
            return []
        if record.worker == suspect:
            if record.status in FINISHED:  # it landed on the suspect itself, and finished there
                logger.info("suspect worker %s finished a trial: not quarantined", suspect)
                del self.suspects[suspect]
                return []
        elif record.status == "broken" and error_signature(record.error) == signature:
            logger.info("worker %s: trial %d broke again on worker %s with the same error (%s): the parameters' "
                        "fault; %s is not quarantined", suspect, trial, record.worker, _last_line(record.error),
                        suspect)
            del self.suspects[suspect]
            self.cleared.append(suspect)
            return []
        elif record.status in FINISHED or record.status == "broken":
            entry["clean"] += 1  # finished, or broke otherwise: its failure there did not reproduce
        if entry["pending"]:
            return []
        if not entry["clean"]:  # re-runs that timed out or were lost: no evidence either way
            logger.info("worker %s: the re-runs of its trials said nothing (time-outs or losses): not quarantined",
                        suspect)
            del self.suspects[suspect]
            return []
        return self._confirm(suspect)

    def _elsewhere(self, worker: str) -> bool:
        return any(w != worker and w not in self.quarantined for w in self._healthy)

    def _decide(self, worker: str) -> tuple[list, list]:
        """Held trials of ``worker``: wait, release as broken, or run them elsewhere (suspect)."""
        state = self._workers.get(worker)
        if worker in self.suspects or state is None or len(state.held) < self.after or not self._elsewhere(worker):
            return [], []
        healthy = self._healthy - {worker}
        shared = [h for h in state.held if self._errors.get(error_signature(h.record.error), set()) & healthy]
        if shared:
            # The same error broke trials on workers that finish others: the parameters' fault.
            state.held = [h for h in state.held if h not in shared]
            logger.info("worker %s: %d trials in a row broke there, %d with an error also seen on other workers "
                        "(%s): recorded broken", worker, len(state.held) + len(shared), len(shared),
                        _last_line(shared[-1].record.error))
            ready = [(h.job, h.record, h.checkpoint) for h in shared]
            if len(state.held) < self.after:
                if not state.held:
                    del self._workers[worker]
                return ready, []
            return ready, self._suspect(worker)
        return [], self._suspect(worker)

    def _suspect(self, worker: str) -> list[tuple[Any, str]]:
        """Run ``worker``'s held trials again elsewhere: their outcome there judges it."""
        state = self._workers.pop(worker)
        trials = [h.job.plan.trial for h in state.held]
        self.suspects[worker] = {
            "worker": worker,
            "host": worker_host(worker),
            "when": self._clock(),
            "why": _last_line(state.held[-1].record.error),
            "trials": list(trials),
            "pending": {h.job.plan.trial: error_signature(h.record.error) for h in state.held},
            "clean": 0,
        }
        logger.warning("worker %s (host %s): %d trials in a row broke there (%s) while trials finish elsewhere; "
                       "running trials %s again on other workers: if they break there too, the parameters are at "
                       "fault; if not, %s is quarantined",
                       worker, worker_host(worker), len(trials), self.suspects[worker]["why"], trials, worker)
        return [(h.job, worker) for h in state.held]

    def _confirm(self, worker: str) -> list[tuple[Any, str]]:
        """Quarantine a suspect: the trials that broke there did not break elsewhere."""
        entry = self.suspects.pop(worker)
        del entry["pending"], entry["clean"]
        entry["when"] = self._clock()
        state = self._workers.pop(worker, None)
        held = [] if state is None else state.held
        entry["trials"] += [h.job.plan.trial for h in held]
        self.quarantined[worker] = entry
        logger.warning(
            "quarantining worker %s (host %s): trials broke there (%s) and not on other workers; no further "
            "trial goes to it; trials %s run again elsewhere", worker, entry["host"], entry["why"], entry["trials"],
        )
        return [(h.job, worker) for h in held]

    def settle(self) -> tuple[list[tuple[Any, TrialRecord, Any]], list[Any]]:
        """Nothing runs: suspect who may be, record the rest of what is held as broken."""
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
