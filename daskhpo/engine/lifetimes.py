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
  Unknown before the first such trial: every worker is then eligible.  A trial
  resumed after a preemption is expected to need what is left (the expected time less
  what its earlier attempts ran).
* **Per fidelity**, when the space has a fidelity dimension (ASHA, Hyperband, PBT set it
  per trial; the loop is told its name) and the data say it matters: one number for every
  trial would be the long, high-fidelity trials' time, so short trials would be kept off
  workers they fit on, and, while few long trials have finished, long trials started where
  they cannot finish.  The rule: a line ``duration = a + b * fidelity`` (least squares,
  ``a`` taken as at least 0) is fitted to the trials completed in one piece, and used once

  - at least ``6`` of them, at ``2`` or more distinct fidelities, and
  - the line rises by more than noise over the fidelities seen: ``b * (highest - lowest)``
    exceeds twice the root mean square of the residuals.

  A trial at fidelity ``f`` is then expected to run ``(a + b * f) * s * margin + slack``,
  where ``s`` is the ``quantile`` of each trial's duration over its line value (the spread
  of the run times, as a factor; running trials count, with the time they ran so far, as
  lower bounds).  Otherwise (no fidelity, too few trials, durations flat in the fidelity)
  the single estimate above.  A trial that continues from a lower rung's checkpoint runs
  less than the line says: it is over-estimated (kept off a worker it would have fitted
  on, never started where it cannot finish).  ``per_fidelity=False`` turns it off.
* **Admission**: a trial is submitted only to the workers whose remaining life (end
  minus now) exceeds its expected run time (and ``min_left``, 60 s, also while the run
  time is unknown); workers whose end is unknown are always eligible.  The executor
  (Dask) picks among all of them (not only the idle ones: a burst of trials pinned to one
  idle worker would queue there).
* **Soft lifetime**: a worker whose remaining life is below the expected run time (per
  fidelity: that of the lowest fidelity seen, the shortest trial it may get) takes
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


#: per fidelity: the fewest trials completed in one piece, and distinct fidelities among them
_MIN_FIT, _MIN_FIDELITIES = 6, 2


def _quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile of sorted ``values`` (the higher of two neighbours)."""
    return values[min(len(values) - 1, int(q * len(values)))]


def _fit(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """``(a, b)`` of ``duration = a + b * fidelity`` when it rises by more than noise, else ``None``."""
    fids = [f for _, f in points]
    if len(points) < _MIN_FIT or len(set(fids)) < _MIN_FIDELITIES:
        return None
    n = len(points)
    mf, md = sum(fids) / n, sum(d for d, _ in points) / n
    var = sum((f - mf) ** 2 for f in fids)
    b = sum((f - mf) * (d - md) for d, f in points) / var
    a = md - b * mf
    rms = math.sqrt(sum((d - a - b * f) ** 2 for d, f in points) / n)
    if b <= 0 or b * (max(fids) - min(fids)) <= 2 * rms:
        return None  # flat, or the fidelity's effect is lost in the noise: the single estimate
    return max(a, 0.0), b


def _check(name: str, value: object, low: float, high: float = math.inf, *, closed: bool = True) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
        low <= value <= high if closed else low < value <= high)
    if not ok:
        span = f"[{low:g}, {high:g}]" if closed else f"({low:g}, {high:g}]"
        raise ValueError(f"Lifetimes: {name} must be a number in {span}, got {value!r}")


class Lifetimes:
    """The workers' ends and the run times of trials: where a trial may start, who retires.

    Pass one to :meth:`daskhpo.Experiment.workon` (``lifetimes=``) to change how the
    expected run time is learned; each run starts from its settings afresh.

    Parameters
    ----------
    quantile : float, default 0.9
        Of the run times of trials that completed in one piece.
    margin : float, default 1.25
        Factor on that quantile (at least 1).
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
    per_fidelity : bool, default True
        Learn the run time per fidelity when the space has one and the data say it
        matters (see :mod:`daskhpo.engine.lifetimes`); ``False``: one number for all.
    """

    def __init__(self, quantile: float = 0.9, margin: float = 1.25, slack: float = 5.0, window: int = 500,
                 wait: float = 600.0, min_left: float = 60.0, per_fidelity: bool = True) -> None:
        _check("quantile", quantile, 0.0, 1.0, closed=False)
        _check("margin", margin, 1.0)
        for name, value in (("slack", slack), ("wait", wait), ("min_left", min_left)):
            _check(name, value, 0.0)
        if not isinstance(window, int) or isinstance(window, bool) or window < _MIN_FIT:
            raise ValueError(f"Lifetimes: window must be an integer >= {_MIN_FIT}, got {window!r}")
        if not isinstance(per_fidelity, bool):
            raise ValueError(f"Lifetimes: per_fidelity must be True or False, got {per_fidelity!r}")
        self.quantile, self.margin, self.slack, self.window, self.wait = quantile, margin, slack, window, wait
        self.min_left, self.per_fidelity = min_left, per_fidelity
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
        #: (run time, fidelity) of the latest trials completed in one piece with a fidelity
        self._points: list[tuple[float, float]] = []
        #: the per-fidelity model in use, ``(a, b, s)`` (see the module), or ``None``
        self.model: tuple[float, float, float] | None = None
        self._warned_starved = self._warned_whole = False
        #: the executor's clock when the running trials were last counted in (:meth:`estimate`)
        self.refreshed = -math.inf

    def fresh(self) -> Lifetimes:
        """A new :class:`Lifetimes` with these settings and nothing learned (one per run)."""
        return Lifetimes(self.quantile, self.margin, self.slack, self.window, self.wait, self.min_left,
                         self.per_fidelity)

    # -- learning ---------------------------------------------------------------------------
    def observe(self, duration: float, fidelity: float | None = None) -> None:
        """The run time of a trial that completed in one piece (at ``fidelity``, if any)."""
        if not (duration >= 0 and math.isfinite(duration)):
            return
        self._recent.append(duration)
        bisect.insort(self._sorted, duration)
        if len(self._recent) > self.window:
            old = self._recent.pop(0)
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._expected = _quantile(self._sorted, self.quantile) * self.margin + self.slack
        if fidelity is not None and self.per_fidelity and math.isfinite(fidelity) and fidelity > 0:
            self._points = [*self._points[-(self.window - 1):], (duration, fidelity)]
            self._refit(())

    def estimate(self, running: Iterable[tuple[float, float | None]], now: float) -> None:
        """Count in the trials running now: ``(seconds each ran so far, its fidelity)`` (lower bounds)."""
        self.refreshed = now
        if not self._sorted:
            return  # nothing completed yet: unknown
        running = list(running)
        samples = sorted([*self._sorted, *(t for t, _ in running)])
        self._expected = _quantile(samples, self.quantile) * self.margin + self.slack
        self._refit([(t, f) for t, f in running if f is not None and f > 0])

    def _refit(self, running: list[tuple[float, float]]) -> None:
        """Refit the per-fidelity model (``running``: lower bounds counted into its spread)."""
        fit = _fit(self._points) if self.per_fidelity else None
        if fit is None:
            self.model = None
            return
        a, b = fit
        ratios = sorted(d / (a + b * f) for d, f in [*self._points, *running])
        self.model = (a, b, _quantile(ratios, self.quantile))

    @property
    def expected(self) -> float | None:
        """Seconds a fresh trial is expected to run (``None``: unknown yet)."""
        return self._expected

    def expected_at(self, fidelity: float | None) -> float | None:
        """Seconds a fresh trial at ``fidelity`` is expected to run (``None``: unknown yet)."""
        if self.model is None or fidelity is None or not math.isfinite(fidelity):
            return self._expected
        a, b, spread = self.model
        return (a + b * max(fidelity, 0.0)) * spread * self.margin + self.slack

    def expected_for(self, ran: float, fidelity: float | None = None) -> float | None:
        """Seconds a trial (at ``fidelity``) that already ran ``ran`` seconds (earlier attempts) still needs."""
        expected = self.expected_at(fidelity)
        if expected is None:
            return None
        return max(expected - ran, self.slack)

    @property
    def shortest(self) -> float | None:
        """Seconds the shortest trial is expected to run: at the lowest fidelity seen, else :attr:`expected`."""
        if self.model is None:
            return self._expected
        return self.expected_at(min(f for _, f in self._points))

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
        # A worker whose whole life is shorter than ``need`` is kept: a fresh job of the same
        # walltime would not fit the trial either, and retiring it would make an adaptive
        # cluster start and retire jobs in a loop (1-minute jobs against the 60 s min_left).
        out = [w for w, end in self.ends.items()
               if end is not None and end <= before and w not in self.retired and w not in busy
               and end - self.born.get(w, wall) > need]
        self.retired.update(out)
        return out
