"""Suggestions off the critical path (daskhpo.engine.suggester), on the model-clock fake executor.

:class:`~daskhpo.engine.simulate.ModelClockExecutor` runs trials in virtual time but lets
virtual time pass at real speed while the model has work, so a deliberately slow optimizer
costs slots exactly what it would cost on a cluster, in seconds of real time per test.
"""

from __future__ import annotations

import threading
import time

import pytest

import daskhpo
from daskhpo.engine import Engine, FakeExecutor, Planned, Suggester
from daskhpo.engine.simulate import ModelClockExecutor
from daskhpo.optimizers import Optimizer, Suggestion

SPACE = {"x": "uniform(-1, 1)"}


def square(x):
    return x**2


class Slow(Optimizer):
    """Random search whose every batch (a "model fit") takes ``delay`` real seconds.

    Counts calls that found another thread inside the optimizer (there must be none).
    """

    name = "slow"

    def __init__(self, space, seed=0, delay=0.05):
        super().__init__(space, seed)
        self.delay = delay
        self.inside = threading.Lock()
        self.overlaps = 0
        self.fitting = False
        self.told: list[int] = []
        self.batches: list[int] = []

    def _enter(self):
        if not self.inside.acquire(blocking=False):
            self.overlaps += 1
            self.inside.acquire()

    def ask(self, trial_id):
        self._enter()
        try:
            time.sleep(self.delay)
            return self._draw(trial_id)
        finally:
            self.inside.release()

    def _draw(self, trial_id):
        self._pending.add(trial_id)
        return Suggestion(self.space.sample(self.rng_for(trial_id)))

    def ask_batch(self, trial_ids):
        self._enter()
        try:
            self.fitting = True
            time.sleep(self.delay)  # one fit serves the whole batch
            self.batches.append(len(trial_ids))
            return [self._draw(t) for t in trial_ids]
        finally:
            self.fitting = False
            self.inside.release()

    def tell(self, trial):
        self._enter()
        try:
            self._pending.pop(trial.id)
            self.told.append(trial.id)
        finally:
            self.inside.release()


def busy_fraction(records, slots):
    last = max(r.started for r in records)
    busy = sum(max(0.0, min(r.ended, last) - r.started) for r in records)
    return busy / (slots * last)


def run(delay, background, slots=20, trials=100, duration=0.5):
    opt = Slow(daskhpo.space.Space(SPACE), delay=delay)
    exp = daskhpo.build_experiment("slow", SPACE, algorithm=opt, seed=0)
    seen_while_fitting = []
    exp.subscribe(lambda record: seen_while_fitting.append(opt.fitting))
    executor = ModelClockExecutor(square, duration=lambda p: duration * (1.25 + p["x"] / 2), slots=slots)
    if not background:
        executor.wake = None
    exp.run(executor, max_trials=trials)
    return exp, opt, seen_while_fitting


def test_a_slow_model_does_not_idle_the_slots():
    # 20 slots of ~0.5 s want 40 suggestions/s; the model takes 0.05 s per call
    exp, opt, _ = run(delay=0.05, background=True)
    records = exp.records()
    assert len(records) == 100 and {r.status for r in records} == {"completed"}
    assert busy_fraction(records, 20) >= 0.7
    assert max(opt.batches) > 1  # one fit served several free slots
    assert opt.overlaps == 0


def test_suggesting_on_the_loop_thread_pays_the_model_per_slot():
    # the same model, suggested on the loop (no model thread): at most 20 of 40 per second
    exp, opt, _ = run(delay=0.05, background=False, trials=60)
    assert busy_fraction(exp.records(), 20) <= 0.6


def test_results_are_recorded_while_the_model_fits():
    exp, opt, seen_while_fitting = run(delay=0.2, background=True, slots=10, trials=40, duration=0.05)
    assert any(seen_while_fitting)  # recorded (journal, subscribers) during a fit
    assert opt.overlaps == 0


def test_the_optimizer_is_told_in_the_recorded_order():
    exp, opt, _ = run(delay=0.01, background=True, slots=8, trials=60, duration=0.2)
    by_seq = [r.trial for r in sorted(exp.records(), key=lambda r: r.seq)]
    assert opt.told == by_seq
    assert opt.pending == ()


def test_suggester_errors_reach_the_loop():
    class Broken(Slow):
        def ask_batch(self, trial_ids):
            raise RuntimeError("model exploded")

    opt = Broken(daskhpo.space.Space(SPACE), delay=0.0)
    exp = daskhpo.build_experiment("broken", SPACE, algorithm=opt, seed=0)
    with pytest.raises(RuntimeError, match="model exploded"):
        exp.run(ModelClockExecutor(square, duration=1.0, slots=4), max_trials=10)


def test_nothing_now_ends_the_run_like_the_loop_does():
    """A suggester answering nothing ends the run once nothing runs (as ``suggest`` -> None)."""
    made = []

    def batch(k):
        out = [Planned(len(made) + i, {"x": 0.0}) for i in range(min(k, 5 - len(made)))]
        made.extend(out)
        return out

    executor = ModelClockExecutor(square, duration=1.0, slots=3)
    finished = Engine(executor).run(Suggester(batch), lambda record, checkpoint: None)
    assert finished == 5 and len(executor.submitted) == 5


def test_plain_fake_executor_still_suggests_on_the_loop_thread():
    exp = daskhpo.build_experiment("plain", SPACE, seed=0)
    exp.run(FakeExecutor(square, duration=1.0, slots=3), max_trials=9)
    assert len(exp.records()) == 9


def test_reports_are_decided_off_the_loop_and_prune():
    """Reports go through the model thread too: decisions arrive later and still prune."""

    def reporting(x):
        for step in (1, 3, 9):
            daskhpo.report(step, x**2 + 1 / step)
        return x**2

    exp = daskhpo.build_experiment(
        "asha-bg", SPACE, algorithm=("asha", {"min_resource": 1, "max_resource": 9, "reduction_factor": 3}), seed=0
    )
    exp.run(ModelClockExecutor(reporting, duration=1.0, slots=6), max_trials=40)
    statuses = [r.status for r in exp.records()]
    assert set(statuses) <= {"completed", "pruned"} and statuses.count("pruned") >= 10
    assert all(len(exp.reports(r.trial)) >= 1 for r in exp.records())


class SlowFilling(Slow):
    """The slow model, letting the engine fill waiting slots; logs what the model suggested."""

    fills_idle_slots = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ask_log: dict[int, dict] = {}
        self.incumbents_seen: list[int] = []

    def _draw(self, trial_id):
        suggestion = super()._draw(trial_id)
        self.ask_log[trial_id] = suggestion.params
        return suggestion

    def fill(self, trial_id, incumbents=()):
        self.incumbents_seen.append(len(incumbents))
        return super().fill(trial_id, incumbents)


def filled(exp, opt):
    """Ids of the trials that ran a fill rather than the model's suggestion."""
    return [r.trial for r in exp.records() if r.params != opt.ask_log.get(r.trial)]


def run_filling(fill_idle, slots=20, trials=100, delay=0.2, duration=0.5):
    opt = SlowFilling(daskhpo.space.Space(SPACE), delay=delay)
    exp = daskhpo.build_experiment("filling", SPACE, algorithm=opt, seed=0)
    executor = ModelClockExecutor(square, duration=lambda p: duration * (1.25 + p["x"] / 2), slots=slots)
    exp.run(executor, max_trials=trials, fill_idle=fill_idle)
    return exp, opt


def test_slots_waiting_for_a_long_batch_are_filled_from_the_prior():
    # each batch takes 0.2 s, 40 % of a trial: slots freed meanwhile run cheap fills
    exp, opt = run_filling(0.25)
    records = exp.records()
    fills = filled(exp, opt)
    assert sorted(r.trial for r in records) == list(range(100))  # one counter, no id twice or skipped
    assert 0 < len(fills) <= 0.25 * 100 + 1  # capped at the share
    assert opt.overlaps == 0 and opt.pending == ()
    assert sorted(opt.told) == list(range(100))  # fills are told like any trial
    assert max(opt.incumbents_seen) == 5  # fills start from the best trials so far, too
    waiting, _ = run_filling(0.0)
    assert filled(waiting, waiting.optimizer) == []
    assert busy_fraction(records, 20) > busy_fraction(waiting.records(), 20)


def test_a_model_faster_than_the_trials_is_never_replaced():
    # batches of 5 ms against 2 s trials: no slot waits 2 % of a trial (40 ms)
    exp, opt = run_filling(0.25, slots=10, trials=40, delay=0.005, duration=2.0)
    assert filled(exp, opt) == []


def test_fill_idle_is_checked():
    exp = daskhpo.build_experiment("bad-fill", SPACE, seed=0)
    for bad in (1.0, -0.1, "half"):
        with pytest.raises(ValueError, match="fill_idle must be a share"):
            exp.run(FakeExecutor(square, duration=1.0, slots=2), max_trials=2, fill_idle=bad)


def napping(x):
    time.sleep(0.05 * (1.5 + x / 2))
    return x**2


def test_fills_keep_a_dask_cluster_busy_while_the_model_fits(client):
    """The same through the Dask executor: fills on the loop's thread, the model on its own."""
    opt = SlowFilling(daskhpo.space.Space(SPACE), delay=0.15)
    exp = daskhpo.build_experiment("filling-dask", SPACE, algorithm=opt, seed=0)
    exp.workon(napping, max_trials=40, client=client, n_workers=4)
    records = exp.records()
    assert sorted(r.trial for r in records) == list(range(40))
    assert {r.status for r in records} == {"completed"}
    assert 0 < len(filled(exp, opt)) <= 0.25 * 40 + 1
    assert opt.overlaps == 0 and opt.pending == ()
