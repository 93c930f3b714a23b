"""Simulating what the loop and the model cost, in the fake executor's virtual time.

:class:`ModelClockExecutor` is a :class:`~daskhpo.engine.FakeExecutor` whose virtual clock
also counts real work, so that a simulation of a thousand slots shows what a slow loop or
model would cost on a cluster:

* **the loop's time**: every real second that passes on the loop's side between two calls
  into the executor (recording, telling, suggesting on the loop thread, waiting for the
  model) moves the clock forward by that second before the next call is served;
* **the model thread's time**: it has ``wake()``, so the experiment suggests from a
  :class:`~daskhpo.engine.suggester.Suggester`.  From the moment trials are requested
  until the model has none left to suggest, virtual time passes at the speed of real
  time: events scheduled before the model's virtual "now" are delivered (results are
  received and recorded while it fits), later ones wait, in real time, for the batch;
  each batch wakes the loop at the virtual time it was ready.  While no model works, the clock jumps from event to
  event as in the plain fake executor.

So utilization measured on its clock is what the slots would see if the model and the
loop ran at the speed they run here.  It is not deterministic (real time is), so tests of
exact decisions use the plain fake executor.
"""

from __future__ import annotations

import threading
import time

from .executor import ExecutorEvent, Wake
from .fake import FakeExecutor
from .worker import TrialTask

__all__ = ["ModelClockExecutor"]


class ModelClockExecutor(FakeExecutor):
    """A fake executor whose clock is charged with the loop's and the model's real time.

    Takes the arguments of :class:`~daskhpo.engine.FakeExecutor`.

    Attributes
    ----------
    charged : float
        Real seconds the loop spent between calls into the executor (added to the clock).
    model_seconds : float
        Real seconds the model thread spent on batches.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.charged = 0.0
        self.model_seconds = 0.0
        self._left: float | None = None
        self._cv = threading.Condition()
        self._model_batch: tuple[float, float] | None = None  # (real start, virtual start) of a batch
        self._woken: float | None = None  # virtual time of a pending wake-up

    # -- the loop's side ---------------------------------------------------------------
    def _charge(self) -> None:
        t = time.perf_counter()
        if self._left is not None:
            with self._cv:
                self.now += t - self._left
            self.charged += t - self._left

    def _leave(self) -> None:
        self._left = time.perf_counter()

    def open(self) -> None:
        super().open()
        self._model_batch = self._woken = None
        self._leave()

    def submit(self, task: TrialTask, avoid: str | None = None) -> None:
        self._charge()
        try:
            super().submit(task, avoid=avoid)
        finally:
            self._leave()

    def next_event(self) -> ExecutorEvent:
        self._charge()
        try:
            with self._cv:
                while True:
                    if self._woken is not None:
                        self.now, self._woken = max(self.now, self._woken), None
                        return Wake()
                    if self._model_batch is None:
                        break
                    real0, virtual0 = self._model_batch
                    model_now = virtual0 + time.perf_counter() - real0
                    if self._events and self._events[0][0] <= model_now:
                        break  # happened while the model works
                    ahead = self._events[0][0] - model_now if self._events else None
                    self._cv.wait(ahead)
                return super().next_event()
        finally:
            self._leave()

    # -- the model thread's side -------------------------------------------------------
    def model_busy(self, busy: bool) -> None:
        """The model has work from now on (``True``), or none left (``False``)."""
        with self._cv:
            t = time.perf_counter()
            if busy and self._model_batch is None:
                self._model_batch = (t, self.now)
            elif not busy and self._model_batch is not None:
                self.model_seconds += t - self._model_batch[0]
                self._model_batch = None
            self._cv.notify_all()

    def wake(self) -> None:
        """Wake the loop, at the model's virtual time if it has work (a batch is ready)."""
        with self._cv:
            when = self.now
            if self._model_batch is not None:
                when = max(when, self._model_batch[1] + time.perf_counter() - self._model_batch[0])
            self._woken = max(self._woken or 0.0, when)
            self._cv.notify_all()
