"""When broken trials end a run: ``max_broken``, as a pure policy.

Real searches have configurations that fail: a model too large for the GPU runs out of
memory, a learning rate too high diverges to NaN.  Those are results (the optimizer
learns to avoid them), not a reason to stop.  What should stop a run is an objective that
is broken itself (a typo, a missing file, a service down), which shows as broken trials
*in a row*, far more of them than the failure rate seen so far explains.

``max_broken`` takes three kinds of values:

``"auto"`` (the default)
    Stop when the objective itself looks broken, never because some configurations fail:

    * no trial of this run finished (completed or pruned) and ``10 + 2 * n_workers``
      trials in a row broke.  Twice the slots because failures are often fast (an
      out-of-memory error at the first batch) and successes slow: with a third of the
      space failing, each slot sees half a failure on average before it holds a trial
      that will succeed, so the first outcomes of a run can all be failures;
    * or trials did finish in this run, and then at least ``10 + 2 * n_workers`` broke in
      a row, a streak whose chance at the failure rate seen before it (the upper bound,
      at 99 %, of ``(b + 1) / (n + 2)`` for ``b`` broken of the ``n`` outcomes before
      the streak), over the outcomes of the run, is below 1 in 1,000.  With a third of
      the space failing, a run of 1,000 trials needs 14 in a row (so the floor decides
      from two slots on); with nine in ten failing, about 160; an objective that broke
      after 100 successes stops at the floor.

    What it tolerates (``tests/engine/test_broken.py``, with the first outcomes of every
    slot failing, as when failures are fast): half of the space failing never stopped a
    run of 2,000 trials in 1,000 tries; two thirds stopped about 1 in 70 at the start
    (the floor reached before any success); where most configurations fail, pass
    ``max_broken=None``.
``None`` (or ``math.inf``)
    Never stop because of broken trials.
an integer ``k``
    Stop once more than ``k`` trials of this run broke (the explicit budget of earlier
    versions, whose default was 3).

"Broken" is every outcome that is not finished: ``broken`` (raised, returned NaN or
garbage), ``timeout`` and ``lost``.  The policy counts outcomes in the order they are
recorded; trials held by the quarantine (:mod:`daskhpo.engine.quarantine`) count when they
are recorded.  It reads no clock and does no I/O: :class:`~daskhpo.engine.state.LoopState`
feeds it each recorded outcome and asks for its verdict.
"""

from __future__ import annotations

import math
from typing import Union

__all__ = ["AUTO", "BrokenPolicy", "check_max_broken"]

#: the default policy: stop only when the objective itself looks broken
AUTO = "auto"

#: a streak after trials finished must be less likely than this, over the run, to stop it
CHANCE = 1e-3

MaxBroken = Union[int, str, None]


def check_max_broken(value: object) -> MaxBroken:
    """``max_broken`` as the policy takes it: ``"auto"``, ``None`` (never) or an int >= 0.

    ``math.inf`` is accepted as ``None``.

    Raises
    ------
    ValueError
        Naming ``max_broken`` and the value, for anything else.
    """
    if value is None or value == AUTO:
        return value  # type: ignore[return-value]
    if isinstance(value, float) and value == math.inf:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"max_broken must be 'auto', None (never stop) or a non-negative integer, got {value!r}")
    return value


class BrokenPolicy:
    """Counts the recorded outcomes of one run and says when broken ones end it.

    Parameters
    ----------
    max_broken : {"auto"} or int or None
        See the module's docstring.
    n_workers : int
        Trials in flight (the ``"auto"`` floor is ``10 + 2 * n_workers``).
    """

    def __init__(self, max_broken: MaxBroken, n_workers: int) -> None:
        self.max_broken = check_max_broken(max_broken)
        self.floor = 10 + 2 * max(int(n_workers), 1)
        #: outcomes of this run recorded so far
        self.finished = self.broken = 0
        #: broken outcomes in a row, the most recent ones
        self.streak = 0

    def observe(self, finished: bool) -> None:
        """One outcome was recorded (``finished``: completed or pruned)."""
        if finished:
            self.finished += 1
            self.streak = 0
        else:
            self.broken += 1
            self.streak += 1

    def verdict(self) -> str | None:
        """Why the run must stop now (the start of the error message), or ``None``."""
        limit = self.max_broken
        if limit is None:
            return None
        if limit != AUTO:
            if self.broken > limit:
                return f"{self.broken} trials broke (max_broken={limit}) in this run"
            return None
        if self.streak < self.floor:
            return None
        if self.finished == 0:
            return (f"{self.broken} trials broke in this run and none finished: the objective looks broken "
                    f"(max_broken='auto' stops after {self.floor} in a row without a finished trial)")
        before = self.finished + self.broken - self.streak
        rate = (self.broken - self.streak + 1) / (before + 2)
        # the rate's upper bound (99 %): a rate measured on few outcomes may be far too low
        rate = min(1.0, rate + 2.33 * math.sqrt(rate * (1 - rate) / (before + 2)))
        outcomes = self.finished + self.broken
        if outcomes * rate ** self.streak >= CHANCE:
            return None  # as long a streak is plausible at the failure rate seen so far
        return (f"{self.broken} trials broke in this run, the last {self.streak} in a row after {self.finished} "
                f"finished: the objective looks broken (max_broken='auto': a streak that long has a chance under "
                f"{CHANCE:g} at the failure rate seen before it, {rate:.0%})")
