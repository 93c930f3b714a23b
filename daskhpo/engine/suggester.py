"""Suggestions off the critical path: the model runs on a thread of its own.

A :class:`Suggester` owns every call into the optimizer while a run lasts, on one
background thread (the *model thread*), one call at a time and in the order they were
given.  The loop thread never waits on a model fit:

* **results** are made durable by the loop (journal, checkpoints, subscribers) and the
  optimizer's ``tell`` is *posted* (:meth:`Suggester.post`): run at once on the loop
  thread if the model is free, else by the model thread before its next batch, always in
  the order the results were recorded;
* **free slots** are *requested* (:meth:`Suggester.request`); the model thread answers
  all outstanding requests with one batch (``suggest_batch(k)``: one model fit serves
  ``k`` free slots, the optimizer's :meth:`~daskhpo.optimizers.Optimizer.ask_batch`
  accounting for the ones it has just suggested, e.g. kriging-believer fantasies), and
  wakes the loop (``on_ready``) for each batch;
* **reports** need a decision (continue or prune): the experiment posts the decision like a
  tell (after the results recorded before the report); it is made at once if the model is
  free, else by the model thread before its next batch, and handed to the loop
  (:meth:`~daskhpo.engine.Engine.decide_later`), which stops the trial if it is pruned.
  The loop never waits for it.  (:meth:`Suggester.call` runs a call synchronously, under
  the model lock, for callers that must have the answer.)

A lock (the *model lock*) is held by whichever thread calls into the optimizer, so it is
touched by one thread at a time, and posted calls always run before anything after them.

* **idle slots** while a batch runs long: requests that the batch under way does not
  cover would wait for it and for the next one.  When that batch has already taken longer
  than ``fill_after`` times a typical trial's run time (:attr:`Suggester.trial_seconds`),
  they are served at once by ``fill(k)`` (cheap suggestions that never touch the model:
  :meth:`~daskhpo.optimizers.Optimizer.fill`), up to a share ``fill_share`` of all
  suggestions, like the random configurations SMAC interleaves.  With trials of minutes a
  model never waits that long and nothing is filled; with one-second trials on a slow
  model it is what keeps the slots busy.

So the model is only ever touched by one thread; nothing is asked that no slot
wants (no suggestion is thrown away at the end of a run); and a slow model costs the
slots that wait for it, never the reception or recording of results.

The engine uses a suggester when its executor can be woken from another thread (it has a
``wake()`` method that makes :meth:`~daskhpo.engine.executor.Executor.next_event` return a
:class:`~daskhpo.engine.executor.Wake`), as :class:`~daskhpo.engine.DaskExecutor` can;
with other executors (the deterministic :class:`~daskhpo.engine.FakeExecutor`) it
suggests on the loop thread, as before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["Suggester"]

logger = logging.getLogger(__name__)


class _Call:
    __slots__ = ("fn", "args", "posted")

    def __init__(self, fn: Callable[..., Any], args: tuple, posted: bool = False) -> None:
        self.fn, self.args, self.posted = fn, args, posted


class Suggester:
    """One background thread that serializes every call into the model.

    Parameters
    ----------
    suggest_batch : callable
        ``suggest_batch(k) -> list[Planned]``: up to ``k`` trials to run (fewer, or none,
        when the optimizer has nothing more right now).
    max_batch : int, default 64
        Most suggestions one call of ``suggest_batch`` is asked for.
    on_ready : callable, optional
        Called (from the model thread) after each batch, and after an error.
    on_busy : callable, optional
        ``on_busy(True)`` when trials are requested, ``on_busy(False)`` when a batch
        leaves nothing requested (simulations use it to let virtual time pass at the
        speed of the model while it has work).
    inline_s : float, default 0.002
        A model whose batches have taken less than this many seconds (moving average) is
        asked on the loop's thread when it is free: for random search or a small TPE the
        hop to the model thread and back costs more than the model.
    fill : callable, optional
        ``fill(k) -> list[Planned]``: ``k`` trials that cost nothing to suggest and do
        not touch the model (called on the loop's thread while the model thread works).
        Without it, slots wait for the model.
    fill_share : float, default 0.25
        Most share of all suggestions that ``fill`` may make.
    fill_after : float, default 0.02
        Requests are filled once the batch under way has taken this share of
        :attr:`trial_seconds`.
    clock : callable, default time.perf_counter
        Seconds, for the batches' durations and the fills' patience (an executor that
        drives the model in virtual time sets its own: see :meth:`begin_turn`).
    """

    def __init__(
        self,
        suggest_batch: Callable[[int], list[Any]],
        *,
        max_batch: int = 64,
        on_ready: Callable[[], None] | None = None,
        on_busy: Callable[[bool], None] | None = None,
        inline_s: float = 0.002,
        fill: Callable[[int], list[Any]] | None = None,
        fill_share: float = 0.25,
        fill_after: float = 0.02,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not 0.0 <= fill_share < 1.0:
            raise ValueError(f"fill_share must be in [0, 1), got {fill_share!r}")
        self._suggest_batch = suggest_batch
        self.max_batch = max_batch
        self.on_ready = on_ready
        self.on_busy = on_busy
        self._cv = threading.Condition()
        #: held by whichever thread is calling into the model
        self._model_lock = threading.Lock()
        self._tasks: deque[_Call] = deque()
        self._wanted = 0
        self._ready: deque[Any] = deque()
        self._nothing = False
        self._error: BaseException | None = None
        self._closed = False
        self._thread: threading.Thread | None = None
        #: batches run, suggestions made (by the model; by ``fill``), seconds spent
        #: suggesting, seconds in tells
        self.stats = {"batches": 0, "suggestions": 0, "fills": 0, "suggest_s": 0.0, "posted_s": 0.0}
        self._fill, self.fill_share, self.fill_after = fill, fill_share, fill_after
        #: a typical trial's run time in seconds (set by the caller as trials finish;
        #: ``None``: unknown, nothing is filled)
        self.trial_seconds: float | None = None
        #: size and start (perf_counter) of the batch under way on the model thread
        self._batch_k, self._batch_t0 = 0, 0.0
        #: a model whose batches take less than this (seconds, moving average) runs inline
        self.inline_s = inline_s
        self._batch_s: float | None = None
        self.clock = clock
        #: plans (or the error) of the batch begun by :meth:`begin_turn`, until :meth:`end_turn`
        self._turn: tuple[int, list[Any], BaseException | None] | None = None

    # -- the loop's side -------------------------------------------------------------------
    def start(self) -> Suggester:
        """Start the model thread."""
        self._thread = threading.Thread(target=self._run, name="daskhpo-suggester", daemon=True)
        self._thread.start()
        return self

    def request(self, n: int) -> None:
        """Want ``n`` more trials.

        When the model has been cheap (its batches took less than :attr:`inline_s` on
        average) and is free, the batch runs at once on the calling thread: a thread hop
        would cost more than the model.  Otherwise the model thread suggests them.
        """
        if n <= 0:
            return
        if self._inline(n):
            return
        with self._cv:
            self._wanted += n
            self._nothing = False
            self._cv.notify_all()
        if self.on_busy is not None:
            self.on_busy(True)  # the model has work from now on (not from when its thread wakes up)
        self._fill_idle()

    def _fill_idle(self) -> None:
        """Serve at once the requests that the (long) batch under way does not cover."""
        if self._fill is None or not self.fill_share or not self.trial_seconds:
            return
        with self._cv:
            uncovered = self._wanted - self._batch_k
            if not self._batch_k or uncovered <= 0 or self._error is not None or self._closed:
                return
            if self.clock() - self._batch_t0 < self.fill_after * self.trial_seconds:
                return
            # fills <= share x all suggestions, counting these
            made, fills = self.stats["suggestions"], self.stats["fills"]
            k = min(uncovered, int((self.fill_share * (made + fills) - fills) / (1.0 - self.fill_share)))
            if k <= 0:
                return
            self._wanted -= k  # taken from the model's work before it can start on them
        plans: list[Any] = []
        try:
            plans = list(self._fill(k))
        finally:
            with self._cv:
                self._wanted += k - len(plans)
                self._ready.extend(plans)
                self.stats["fills"] += len(plans)

    def _inline(self, n: int) -> bool:
        cheap = self._batch_s is not None and self._batch_s < self.inline_s
        if not cheap or not self._model_lock.acquire(blocking=False):
            return False
        try:
            with self._cv:
                if self._wanted or self._error is not None or self._closed:
                    return False  # the model thread has work queued: keep the order
            self._drain(raise_posted=True)
            k = min(n, self.max_batch)
            plans = self._batch(k)
            with self._cv:
                self.stats["suggestions"] += len(plans)
                self._ready.extend(plans)
                self._nothing = self._nothing or len(plans) < k
            return True
        finally:
            self._model_lock.release()

    def _batch(self, k: int) -> list[Any]:
        """One call of ``suggest_batch`` (the caller holds the model lock), timed."""
        t0 = self.clock()
        try:
            return list(self._suggest_batch(k))
        finally:
            self._timed(self.clock() - t0)

    def _timed(self, took: float) -> None:
        self._batch_s = took if self._batch_s is None else 0.8 * self._batch_s + 0.2 * took
        self.stats["suggest_s"] += took
        self.stats["batches"] += 1

    @property
    def outstanding(self) -> int:
        """Trials requested and not yet taken (being suggested, or ready)."""
        with self._cv:
            return self._wanted + len(self._ready)

    def take(self) -> list[Any]:
        """The trials suggested so far (and not yet taken); raises the model's error."""
        self._fill_idle()
        with self._cv:
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            plans = list(self._ready)
            self._ready.clear()
            return plans

    def nothing_now(self) -> bool:
        """Whether the optimizer answered a request with nothing (then the request is dropped)."""
        with self._cv:
            nothing, self._nothing = self._nothing, False
            return nothing

    def wait(self, timeout: float | None = None) -> None:
        """Block until a trial is ready, every request is answered, or the model failed."""
        with self._cv:
            self._cv.wait_for(lambda: self._ready or not self._wanted or self._error is not None, timeout)

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` after what was posted before, before the next batch.

        At once on this thread when the model is free (no thread hop for a cheap
        ``tell``); else the model thread runs it before its next batch.
        """
        with self._cv:
            self._tasks.append(_Call(fn, args, posted=True))
            self._cv.notify_all()
        if self._model_lock.acquire(blocking=False):
            try:
                self._drain(raise_posted=True)
            finally:
                self._model_lock.release()

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` after the posted calls, on this thread, and return its result.

        Waits (only) for a batch already under way: the model is touched by one thread
        at a time.
        """
        with self._model_lock:
            self._drain(raise_posted=True)
            return fn(*args)

    def _drain(self, raise_posted: bool) -> None:
        """Run the posted calls in order (the caller holds the model lock)."""
        while True:
            with self._cv:
                if not self._tasks:
                    return
                item = self._tasks.popleft()
            t0 = time.perf_counter()
            try:
                item.fn(*item.args)
            except BaseException as exc:  # noqa: BLE001
                if raise_posted:
                    raise
                with self._cv:  # nobody waits for it: the loop raises it at its next take()
                    self._error = self._error or exc
                    self._wanted = 0
                    self._cv.notify_all()
                if self.on_ready is not None:
                    self.on_ready()
                return
            finally:
                self.stats["posted_s"] += time.perf_counter() - t0

    def close(self) -> None:
        """Stop the model thread (after the call under way) and drop what is not done."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None

    # -- the model thread ------------------------------------------------------------------
    @property
    def batch_under_way(self) -> int:
        """Suggestions the batch under way was asked for (0: none runs)."""
        with self._cv:
            return self._batch_k

    def has_work(self) -> bool:
        """Whether the model has something to do: posted calls, or trials wanted.

        Posted calls count on their own: a decision posted while a batch runs is made
        right after that batch, not at the next request for trials (which may never come).
        """
        with self._cv:
            return not self._closed and (bool(self._tasks) or (bool(self._wanted) and self._error is None))

    def _run(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._closed or self._tasks or (self._wanted and self._error is None))
                if self._closed:
                    return
            if self.begin_turn(blocking=True):
                self.end_turn()

    def begin_turn(self, blocking: bool = False) -> bool:
        """One turn of the model, first half: the posted calls, then a batch's suggestions.

        The model thread calls it and :meth:`end_turn` back to back.  An executor that
        drives the model in virtual time instead of :meth:`start` (the fake executor, see
        :meth:`~daskhpo.engine.fake.FakeExecutor.drive_model`) calls this when trials are
        requested and :meth:`end_turn` when the batch's virtual duration has passed:
        in between, the model lock stays held, so that calls posted meanwhile wait for
        the batch as they would for a real one.

        Returns
        -------
        bool
            Whether a batch was begun (then the model lock is held until :meth:`end_turn`);
            ``False`` when there was nothing to suggest, or the model lock was taken.
        """
        if not self._model_lock.acquire(blocking=blocking):
            return False
        with self._cv:
            posted = bool(self._tasks)
        self._drain(raise_posted=False)
        with self._cv:
            k = min(self._wanted, self.max_batch)
            begin = not (self._closed or not k or self._error is not None)
            if begin:
                self._batch_k, self._batch_t0 = k, self.clock()
        if not begin:
            self._model_lock.release()
            if posted and self.on_ready is not None:
                self.on_ready()  # what the posted calls decided is there to take
            return False
        try:
            plans, error = list(self._suggest_batch(k)), None
        except BaseException as exc:  # noqa: BLE001 - raised in the loop by take()
            plans, error = [], exc
        self._turn = (k, plans, error)
        return True

    def end_turn(self) -> None:
        """One turn of the model, second half: hand the batch begun by :meth:`begin_turn` over.

        Releases the model lock and wakes the loop (``on_ready``).
        """
        assert self._turn is not None, "end_turn() without begin_turn()"
        (k, plans, error), self._turn = self._turn, None
        try:
            with self._cv:
                self._timed(self.clock() - self._batch_t0)
                self._batch_k = 0
                self.stats["suggestions"] += len(plans)
                self._ready.extend(plans)
                if error is not None:
                    self._error, self._wanted = error, 0
                elif len(plans) < k:  # nothing more right now: drop the rest of the request
                    self._wanted, self._nothing = 0, True
                else:
                    self._wanted -= k
                idle = not self._wanted
                self._cv.notify_all()
        finally:
            self._model_lock.release()
        if self.on_ready is not None:
            self.on_ready()
        if idle and self.on_busy is not None:
            self.on_busy(False)
