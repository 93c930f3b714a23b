"""Workers that come and go on schedule: walltime-aware admission and soft lifetimes.

On a batch system every worker lives inside a job with an end (its walltime, a
preemption announced by a signal).  An executor that knows these ends sends
:class:`~daskhpo.engine.executor.WorkersChanged` (each connected worker and the epoch
time it ends, or ``None``); :class:`Lifetimes` turns them into three rules, which
:class:`~daskhpo.engine.state.LoopState` applies (pure: no clock but the event's time, no
I/O):

* **Expected run time**, learned from the trials of this run that completed in one
  piece (no preemption; pruned trials stopped early and say nothing of a full run): the
  ``quantile`` (0.9) of their run times, times ``margin`` (1.25), plus ``slack`` (5 s).
  The trials still running count too, with the time they ran so far (at least that: a
  lower bound), refreshed every minute; without them the first estimates would be those
  of the short trials alone (the long ones have not finished yet), and long trials would
  be started where they cannot finish.
  Unknown before the first such trial: every worker is then eligible.  One number for
  every configuration: when run time depends strongly on a parameter (a fidelity, a
  model size) the high quantile is the long trials' time, so short trials are merely kept
  off workers they would have fitted on (a loss of placement, never of work).  A trial
  resumed after a preemption is expected to need what is left (the expected time less
  what its earlier attempts ran).
* **Admission**: a trial is submitted only to the workers whose remaining life (end
  minus now) exceeds its expected run time (and ``min_left``, 60 s, also while the run
  time is unknown); workers whose end is unknown are always eligible.  The executor
  (Dask) picks among all of them (not only the idle ones: a burst of trials pinned to one
  idle worker would queue there).
* **Soft lifetime**: a worker whose remaining life is below the expected run time takes
  nothing new; once nothing of this run runs (or may still start) on it, the loop asks
  the executor to retire it (:class:`~daskhpo.engine.state.Retire`): it leaves at once,
  instead of idling to its end, and an adaptive cluster (``cluster.adapt()``, which
  sees the queued trials) starts a fresh job in its place ahead of time.  A cluster of
  fixed size does not replace it; when every worker is retired the run ends with
  :class:`~daskhpo.engine.errors.NoWorkersError` after ``worker_timeout``, which says so.

**Never silently starved.**  When no connected worker has time enough left and every
one's end is known, the trial *waits* (it is not submitted; its slot stays taken) for a
worker it fits on: the workers near their end, idle now, are retired and an adaptive
cluster replaces them with fresh jobs, on which it then starts.  The wait is bounded:
after ``wait`` seconds (600 by default) without such a worker, or at once when the trial
is expected to run longer than any worker's *whole* life (from its process's start, else
from when it was first seen, to its end: fresh jobs of the same walltime would not fit it either), it is submitted anyway,
without restriction, and a warning (once per run) names the expected run time and the
longest remaining life.  It may then be cut short at its worker's end: it resumes from its
checkpoint (a trial that reports checkpoints loses little; one longer than a whole
walltime can only finish so) or starts again from zero within ``retries``.  A cluster of
fixed size (no replacements) thus loses ``wait`` seconds per such stretch, never the run.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Iterable, Mapping

__all__ = ["Lifetimes"]

logger = logging.getLogger(__name__)


class Lifetimes:
    """The workers' ends and the run times of trials: where a trial may start, who retires.

    Parameters
    ----------
    quantile : float, default 0.9
        Of the run times of trials that completed in one piece.
    margin : float, default 1.25
        Factor on that quantile.
    slack : float, default 5.0
        Seconds added (start-up, checkpoint writing).
    window : int, default 500
        Run times kept (the latest).
    wait : float, default 600.0
        Seconds (of the executor's clock) a trial waits for a worker it fits on before it
        is submitted anyway.
    min_left : float, default 60.0
        No trial starts on a worker with less than this left, whatever the expected run
        time (and while it is unknown: before the first trial completed, or a worker just
        signalled to leave).
    """

    def __init__(self, quantile: float = 0.9, margin: float = 1.25, slack: float = 5.0, window: int = 500,
                 wait: float = 600.0, min_left: float = 60.0) -> None:
        self.quantile, self.margin, self.slack, self.window, self.wait = quantile, margin, slack, window, wait
        self.min_left = min_left
        #: worker -> its end (epoch seconds; None: unknown), as last sent
        self.ends: dict[str, float | None] = {}
        #: worker -> when it started (its process; else when it was first seen): for its whole life
        self.born: dict[str, float] = {}
        #: whether an executor ever sent the workers' ends
        self.known = False
        #: workers asked to retire (never asked twice)
        self.retired: set[str] = set()
        self._recent: list[float] = []
        self._sorted: list[float] = []
        self._expected: float | None = None
        self._warned_starved = self._warned_whole = False
        #: the executor's clock when the running trials were last counted in (:meth:`estimate`)
        self.refreshed = -math.inf

    # -- learning ---------------------------------------------------------------------------
    def observe(self, duration: float) -> None:
        """The run time of a trial that completed in one piece."""
        if not (duration >= 0 and math.isfinite(duration)):
            return
        self._recent.append(duration)
        bisect.insort(self._sorted, duration)
        if len(self._recent) > self.window:
            old = self._recent.pop(0)
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        q = self._sorted[min(len(self._sorted) - 1, int(self.quantile * len(self._sorted)))]
        self._expected = q * self.margin + self.slack

    def estimate(self, running: Iterable[float], now: float) -> None:
        """Count in the trials running now, with the seconds each ran so far (lower bounds)."""
        self.refreshed = now
        if not self._sorted:
            return  # nothing completed yet: unknown
        samples = sorted([*self._sorted, *running])
        q = samples[min(len(samples) - 1, int(self.quantile * len(samples)))]
        self._expected = q * self.margin + self.slack

    @property
    def expected(self) -> float | None:
        """Seconds a fresh trial is expected to run (``None``: unknown yet)."""
        return self._expected

    def expected_for(self, ran: float) -> float | None:
        """Seconds a trial that already ran ``ran`` seconds (earlier attempts) still needs."""
        if self._expected is None:
            return None
        return max(self._expected - ran, self.slack)

    # -- workers ----------------------------------------------------------------------------
    def update(self, ends: Mapping[str, float | None], wall: float,
               starts: Mapping[str, float] | None = None) -> list[str]:
        """Take the workers' ends (and starts, where known); returns the workers that joined since last time.

        A worker's start is when its process or job started (a cluster joined mid-job has
        workers that started long before); without one, when it was first seen.
        """
        self.known = True
        gone = [w for w in self.ends if w not in ends]
        joined = [w for w in ends if w not in self.ends]
        self.ends = dict(ends)
        starts = starts or {}
        for worker in ends:
            start = starts.get(worker)
            if start is not None and math.isfinite(start) and start <= wall:
                self.born[worker] = min(start, self.born.get(worker, start))
            else:
                self.born.setdefault(worker, wall)
        for worker in gone:
            self.born.pop(worker, None)
            self.retired.discard(worker)
        return joined

    def remaining(self, worker: str, wall: float) -> float:
        """Seconds ``worker`` has left (infinite when its end is unknown)."""
        end = self.ends.get(worker)
        return math.inf if end is None else end - wall

    def eligible(self, wall: float, need: float | None, busy: Iterable[str] = ()) -> tuple[str, ...] | None:
        """The workers a trial needing ``need`` seconds may start on.

        ``None``: anywhere (no ends known, or no worker at all: the executor's
        ``worker_timeout`` speaks then); ``()``: none fits and every end is known (the
        trial waits: see the module's docstring).  ``need`` is at least ``min_left``.  Every
        worker it fits on, those not ``busy`` (running a trial of ours) first: the executor
        (Dask) picks among them.  Not only the idle ones: trials submitted at once would all
        be pinned to the same idle worker, and queue behind one another there while others
        free up.
        """
        if not self.known or not self.ends:
            return None
        after = wall + max(need or 0.0, self.min_left)  # it must end after this
        retired = self.retired
        # an unknown end is an infinite remaining life: always eligible
        fit = [w for w, end in self.ends.items() if (end is None or end > after) and w not in retired]
        busy = set(busy)
        return tuple(sorted(fit, key=lambda w: w in busy))  # stable: idle ones first

    def whole_life(self, wall: float) -> float:
        """The longest whole life (start to end) of a connected worker with a known end."""
        return max((end - self.born.get(w, wall) for w, end in self.ends.items() if end is not None), default=0.0)

    def hopeless(self, wall: float, need: float) -> bool:
        """Whether a trial needing ``need`` seconds is longer than any worker's whole life."""
        return bool(self.ends) and need > self.whole_life(wall)

    def warn_starved(self, wall: float, need: float, waited: float) -> None:
        """Say once that trials are submitted although no worker has the time left for them."""
        if self.hopeless(wall, need):
            if not self._warned_whole:
                self._warned_whole = True
                logger.warning(
                    "walltime: trials are expected to run %.0f s, longer than any worker's whole life (the longest: "
                    "%.0f s): they can only finish by checkpointing (daskhpo.report(..., checkpoint=...)) and "
                    "resuming on the next worker; submitting them anyway; raise the jobs' walltime",
                    need, self.whole_life(wall))
            return
        if not self._warned_starved:
            self._warned_starved = True
            longest = max((self.remaining(w, wall) for w in self.ends), default=0.0)
            logger.warning(
                "walltime: trials are expected to run %.0f s, but the longest remaining life of the %d connected "
                "worker(s) is %.0f s, and no fresh worker came in %.0f s; submitting anyway (a trial cut short at "
                "its worker's end resumes from its checkpoint, or starts again within retries); raise the jobs' "
                "walltime, or let the cluster start fresh jobs (cluster.adapt())",
                need, len(self.ends), longest, waited)

    def to_retire(self, wall: float, need: float | None, busy: Iterable[str], maybe: Iterable[str | None]) -> list[str]:
        """Workers to retire now: too little life left for a trial, nothing of ours on them.

        ``busy``: workers running a trial of this run; ``maybe``: workers a trial not yet
        started may start on (``None``: any worker).
        """
        if not self.known:
            return []
        need = max(need or 0.0, self.min_left)
        maybe = set(maybe)
        if None in maybe:
            return []
        busy = set(busy) | maybe
        before = wall + need
        out = [w for w, end in self.ends.items()
               if end is not None and end <= before and w not in self.retired and w not in busy]
        self.retired.update(out)
        return out
