"""A progress bar for :meth:`daskhpo.Experiment.workon`, and the wiring of callbacks.

:class:`ProgressBar` is a subscriber of the experiment (fed each finished trial's record); it
draws a `tqdm <https://tqdm.github.io>`_ bar (``tqdm.auto``: a text bar in a terminal, a
widget in a notebook) with the finished trials against ``max_trials``, the trials in
flight, the broken ones, the best objective so far and tqdm's ETA.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ..objectives import signs
from ..pareto import non_dominated
from ..records import FINISHED, ReportRecord, TrialRecord, direction_sign
from ._notebook import in_notebook

__all__ = ["ProgressBar", "interactive", "attach", "as_callback_dict"]

logger = logging.getLogger(__name__)


def interactive() -> bool:
    """Whether a person is likely watching: standard error is a terminal, or a notebook runs this."""
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty or in_notebook()


class ProgressBar:
    """A tqdm bar fed with finished trials.

    Parameters
    ----------
    total : int, optional
        ``max_trials`` (finished trials of the whole experiment); ``None`` for a bar
        without an end.
    done : int, default 0
        Trials finished before this run (a resumed experiment).
    n_workers : int, default 1
        Trials kept in flight, shown as ``running`` while trials remain.
    best : float, optional
        The best objective before this run.
    direction : {"minimize", "maximize"}, default "minimize"
        Which objective is best.
    file : file, optional
        Where to draw (default: standard error).
    **tqdm_kwargs
        Passed to ``tqdm.auto.tqdm``.
    """

    def __init__(
        self,
        total: int | None = None,
        *,
        done: int = 0,
        n_workers: int = 1,
        best: float | None = None,
        direction: str = "minimize",
        objectives: dict[str, str] | None = None,
        file: Any = None,
        **tqdm_kwargs: Any,
    ) -> None:
        from tqdm.auto import tqdm

        self.total = total
        self.finished = done
        self.broken = 0
        self.n_workers = n_workers
        self.sign = direction_sign(direction)
        self.best = math.inf * self.sign if best is None else best
        #: several objectives: their signs, and the minimized values of the front so far
        self.signs = signs(objectives or {})
        self.front = np.zeros((0, len(self.signs)))
        tqdm_kwargs.setdefault("unit", "trial")
        tqdm_kwargs.setdefault("dynamic_ncols", True)
        self.bar = tqdm(total=total, initial=done, file=file, **tqdm_kwargs)
        self._refresh()

    @property
    def running(self) -> int:
        """Trials in flight (the engine keeps ``n_workers`` of them while trials remain)."""
        if self.total is None:
            return self.n_workers
        return max(0, min(self.n_workers, self.total - self.finished))

    def _refresh(self) -> None:
        if self.signs:  # several objectives: the size of the Pareto front, not a best value
            shown = f"front={len(self.front)}"
        else:
            shown = "best=" + ("-" if not math.isfinite(self.best) else f"{self.best:.4g}")
        self.bar.set_postfix_str(f"running={self.running} broken={self.broken} {shown}", refresh=True)

    def __call__(self, record: TrialRecord) -> None:
        """Take one finished trial's record."""
        if record.status in FINISHED:
            self.finished += 1
            self.bar.update(1)
            if self.signs:
                self.front_from(record)
            elif record.ok and record.feasible and self.sign * record.objective < self.sign * self.best:
                self.best = float(record.objective)
        else:
            self.broken += 1
        self._refresh()

    def front_from(self, record: TrialRecord) -> None:
        """Count a trial of a multi-objective experiment in the Pareto front shown."""
        if record.ok and record.feasible and len(record.values) == len(self.signs):
            # off the front once, off it for good: the new front is that of (front + this trial)
            values = np.vstack([self.front, np.multiply(record.values, self.signs)])
            self.front = values[non_dominated(values)]

    def close(self) -> None:
        """Finish the bar."""
        self._refresh()
        self.bar.close()


def as_callback_dict(record: TrialRecord, reports: Sequence[ReportRecord]) -> dict[str, Any]:
    """What a callback receives (docs/progress.md shows it): the record's fields under the same
    names and with the same meaning (``constraints`` and ``values`` typed, never among
    ``metrics``), plus ``reports``, the trial's ``(step, values)`` intermediate reports in
    step order.  Subscribers (:meth:`daskhpo.Experiment.subscribe`) get the record itself.
    """
    data = dataclasses.asdict(record)
    data["reports"] = [(r.step, dict(r.values)) for r in reports]
    return data


class _Callback:
    """A user callback as a subscriber: a plain-data copy of the record, with its reports."""

    def __init__(self, experiment: Any, fn: Callable[[dict], Any]) -> None:
        self.experiment, self.fn = experiment, fn

    def __call__(self, record: TrialRecord) -> None:
        self.fn(as_callback_dict(record, self.experiment.reports(record.trial)))


@contextlib.contextmanager
def attach(
    experiment: Any,
    *,
    progress: bool | None,
    callbacks: Sequence[Callable[[dict], Any]] | None,
    total: int | None,
    done: int,
    n_workers: int,
) -> Iterator[None]:
    """Subscribe a progress bar and callbacks to ``experiment`` for the enclosed run.

    Each callback receives a copy of each finished trial's record, with ``reports`` (the
    trial's ``(step, values)`` intermediate reports) added; a callback that raises is
    logged and the run goes on.  Callbacks with a ``setup(experiment)`` method are given the
    experiment first (an error there is raised: no trial has run); those with a ``close()``
    method are closed at the end.
    """
    callbacks = list(callbacks or [])
    for fn in callbacks:
        if not callable(fn):
            raise TypeError(f"callbacks must be callables receiving a trial record, got {fn!r}")
    if progress not in (None, True, False):
        raise ValueError(f"progress must be None, True or False, got {progress!r}")
    for fn in callbacks:
        setup = getattr(fn, "setup", None)
        if callable(setup):  # e.g. the experiment's name for a logger's run (daskhpo.callbacks.MLflow)
            setup(experiment)
    added: list[Callable[[dict], None]] = [_Callback(experiment, fn) for fn in callbacks]
    bar = None
    if progress or (progress is None and interactive()):
        objectives = getattr(experiment, "objectives", None) or {}
        best = None if objectives else experiment.best  # several objectives have no best
        bar = ProgressBar(
            total, done=done, n_workers=n_workers, best=None if best is None else best["objective"],
            direction=experiment.direction, desc=experiment.name or "trials", objectives=objectives,
        )
        if objectives:
            for record in experiment.records():  # the front of the trials stored so far
                bar.front_from(record)
        added.append(bar)
    unsubscribes = [experiment.subscribe(listener) for listener in added]
    try:
        yield
    finally:
        for unsubscribe in unsubscribes:
            unsubscribe()
        if bar is not None:
            bar.close()
        for fn in callbacks:
            close = getattr(fn, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    logger.exception("closing callback %r failed", fn)
