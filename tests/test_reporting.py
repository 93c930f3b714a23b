"""daskhpo.report / TrialPruned / load_checkpoint on real Dask clusters."""

from __future__ import annotations

import json
import math
import os
import threading
import time
import warnings

import numpy as np
import pytest
import xarray as xr
from distributed import Client, LocalCluster

import daskhpo
from daskhpo import reporting
from daskhpo.optimizers import CONTINUE, PRUNE, Optimizer, Suggestion
from daskhpo.records import ReportRecord, TrialRecord


@pytest.fixture(scope="module")
def client():
    """In-process workers: fast, and objectives can share state with the test."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        with Client(cluster) as c:
            yield c


class Scripted(Optimizer):
    """Random configurations; prunes reports at or after ``prune_at`` when x > 0."""

    name = "scripted"

    def __init__(self, space, seed=None, prune_at=math.inf, start_from=None):
        super().__init__(space, seed)
        self.prune_at = prune_at
        self.start_from = start_from or {}
        self.reports = []
        self.told = []

    def ask(self, trial_id):
        params = self.space.sample(self.rng_for(trial_id))
        src = self.start_from.get(trial_id)
        return Suggestion(params, parent=src, checkpoint=src)

    def tell(self, trial):
        self.told.append(trial)

    def report(self, report):
        self.reports.append((report.trial_id, report.step, report.objective))
        return PRUNE if report.step >= self.prune_at and report.params["x"] > 0 else CONTINUE


SPACE = {"x": "uniform(-1, 1)"}
SEEN_PRUNED: list[int] = []
_gate = threading.Event()


def curve(x, steps=8, wait=0.0):
    for step in range(1, steps + 1):
        try:
            daskhpo.report(step, objective=abs(x) + 1.0 / step, accuracy=1 - abs(x))
        except daskhpo.TrialPruned:
            SEEN_PRUNED.append(step)
            raise
        if wait:
            _gate.wait(wait)  # a slow epoch, without a busy loop
    return abs(x)


def test_report_outside_a_trial_warns_and_does_nothing():
    with pytest.warns(RuntimeWarning, match="outside a daskhpo trial"):
        assert daskhpo.report(1, objective=0.5) is None
    assert daskhpo.load_checkpoint() is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert curve(0.25) == 0.25  # the same objective runs standalone


def test_report_rejects_non_numbers(client):
    def bad(x):
        daskhpo.report("one", objective=x)
        return x

    exp = daskhpo.build_experiment("bad", SPACE, algorithm="random", seed=0)
    with pytest.raises(daskhpo.TooManyBrokenTrials):
        exp.workon(bad, max_trials=1, client=client, max_broken=0, n_workers=1)
    assert exp.history.status.values[0] == "broken"
    assert "step" in exp.history.error.values[0]


def test_pruning_reaches_the_objective(client):
    SEEN_PRUNED.clear()
    opt = Scripted(daskhpo.Space(SPACE), seed=1, prune_at=2)
    exp = daskhpo.build_experiment("prune", SPACE, algorithm=opt, seed=1)
    exp.workon(curve, max_trials=12, client=client, wait=0.02)
    ds = exp.history
    status = ds.status.values
    positive = ds.x.values > 0
    assert (status[positive] == "pruned").all() and (status[~positive] == "completed").all()
    assert positive.any() and (~positive).any()
    # stopped asynchronously, at its first report after the decision at step 2
    assert set(SEEN_PRUNED) <= {3, 4} and len(SEEN_PRUNED) == positive.sum()
    assert (ds.last_step.values[positive] < 8).all() and (ds.last_step.values[~positive] == 8).all()
    # a pruned trial's objective is its last reported value; it is never the best
    pruned = np.flatnonzero(positive)[0]
    last = int(ds.last_step.values[pruned])
    assert ds.objective.values[pruned] == pytest.approx(ds.reported_objective.sel(step=last).values[pruned])
    assert exp.best["params"]["x"] <= 0
    # pruned trials count towards max_trials
    assert len(ds.trial) == 12
    # the optimizer was told every report, and the trial after its reports
    assert len(opt.reports) == int(np.isfinite(ds.reported_objective.values).sum())
    assert {t.status for t in opt.told} == {"pruned", "completed"}
    assert all(math.isfinite(t.last_step) for t in opt.told)


def test_history_step_layout_round_trips_and_resume_replays_reports(client, tmp_path):
    path = tmp_path / "curves.nc"
    live_opt = Scripted(daskhpo.Space(SPACE), 3, prune_at=3)
    exp = daskhpo.build_experiment("curves", SPACE, algorithm=live_opt, storage=path, seed=3)
    exp.workon(curve, max_trials=6, client=client, steps=5)
    live = exp.history
    assert live.reported_objective.dims == ("trial", "step")
    assert list(live.step.values) == [1, 2, 3, 4, 5] and live.step.dtype == np.int64
    stored = xr.load_dataset(path, engine="h5netcdf")
    xr.testing.assert_equal(stored.reported_objective, live.reported_objective)
    xr.testing.assert_equal(stored.reported_accuracy, live.reported_accuracy)
    np.testing.assert_array_equal(stored.last_step.values, live.last_step.values)
    # NaN padding after the step where a pruned trial stopped
    for i, last in enumerate(live.last_step.values):
        row = live.reported_objective.values[i]
        assert np.isfinite(row[: int(last)]).all() and np.isnan(row[int(last):]).all()
    # resume: every stored report is replayed to the optimizer before its trial
    resumed_opt = Scripted(daskhpo.Space(SPACE), 3, prune_at=3)
    resumed = daskhpo.build_experiment("curves", SPACE, algorithm=resumed_opt, storage=path)
    assert len(resumed_opt.reports) == int(np.isfinite(live.reported_objective.values).sum())
    # in the order the live optimizer heard of them (the order trials finished), not by id
    assert sorted(t.id for t in resumed_opt.told) == list(range(6))
    assert [t.id for t in resumed_opt.told] == [t.id for t in live_opt.told]
    assert [t.last_step for t in resumed_opt.told] == [live.last_step.values[t.id] for t in resumed_opt.told]
    assert [r[:2] for r in resumed_opt.reports] == [r[:2] for r in live_opt.reports]
    xr.testing.assert_equal(resumed.history.reported_objective, live.reported_objective)
    assert daskhpo.load_experiment(path).history.status.values.tolist() == live.status.values.tolist()


def test_reports_survive_in_the_journal_before_a_snapshot(client, tmp_path):
    """Durability: reports are journaled as they arrive; a reopened store has them."""
    path = tmp_path / "journal.nc"
    exp = daskhpo.build_experiment("j", SPACE, algorithm="random", storage=path, seed=0, snapshot_interval=1e9)
    # Reports of a finished trial and of one still running (a crash now loses only it).
    exp._history.append_report(ReportRecord(0, 1, {"objective": 0.5}))
    exp._history.append_report(ReportRecord(1, 1, {"objective": 0.7}))
    exp._history.append(TrialRecord(**{
        "trial": 0, "params": {"x": 0.1}, "status": "pruned", "objective": 0.5, "metrics": {},
        "submitted": 0.0, "started": 0.0, "ended": 1.0, "worker": None, "gpu": None,
        "attempts": 1, "error": None, "parent": None, "checkpoint_from": None, "last_step": 1.0,
    }))
    with open(f"{path}.journal") as fh:  # its header (space and attrs), then the three events
        lines = [json.loads(line) for line in fh]
    assert [line.get("event") for line in lines][0] == "header" and len(lines) == 1 + 3
    reopened = daskhpo.load_experiment(path).history  # snapshot has nothing: journal only
    assert reopened.reported_objective.sel(step=1).values.tolist() == [0.5]
    assert reopened.status.values.tolist() == ["pruned"]


def remember(x, steps=3):
    state = daskhpo.load_checkpoint()
    start = 0 if state is None else state["step"]
    history = [] if state is None else list(state["xs"])
    for step in range(start + 1, start + steps + 1):
        history.append(x)
        daskhpo.report(step, objective=abs(x), checkpoint={"step": step, "xs": history})
    return {"objective": abs(x), "started_at": float(start), "n_seen": float(len(history))}


@pytest.mark.parametrize("stored", [False, True])
def test_checkpoint_round_trip(client, tmp_path, stored):
    opt = Scripted(daskhpo.Space(SPACE), seed=0, start_from={1: 0, 2: 1})
    storage = tmp_path / "ck.nc" if stored else None
    exp = daskhpo.build_experiment("ck", SPACE, algorithm=opt, storage=storage, seed=0)
    exp.workon(remember, max_trials=3, client=client, n_workers=1)
    ds = exp.history
    assert ds.started_at.values.tolist() == [0.0, 3.0, 6.0]
    assert ds.n_seen.values.tolist() == [3.0, 6.0, 9.0]
    assert ds.parent.values.tolist() == [-1, 0, 1]
    assert ds.checkpoint_from.values.tolist() == [-1, 0, 1]
    assert list(ds.step.values) == list(range(1, 10))
    if stored:  # files next to the history, not in it
        assert sorted(os.listdir(f"{storage}.checkpoints")) == ["trial-0.pkl", "trial-1.pkl", "trial-2.pkl"]
        again = daskhpo.build_experiment("ck", SPACE, algorithm="random", storage=storage)
        assert again._checkpoints.get(2)[0] == "pickle"


def save_dir(x, root):
    state = daskhpo.load_checkpoint()
    if state is None:
        path = os.path.join(root, "model-a")
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "weights.txt"), "w") as fh:
            fh.write("42")
        daskhpo.report(1, objective=1.0, checkpoint=path)
        return 1.0
    with open(os.path.join(state, "weights.txt")) as fh:
        return float(fh.read())


def test_checkpoint_as_a_directory(client, tmp_path):
    opt = Scripted(daskhpo.Space(SPACE), seed=0, start_from={1: 0})
    exp = daskhpo.build_experiment("dir", SPACE, algorithm=opt, seed=0)
    exp.workon(save_dir, max_trials=2, client=client, n_workers=1, root=str(tmp_path))
    assert exp.history.objective.values.tolist() == [1.0, 42.0]


def test_report_across_processes_and_nothing_leaks():
    """Worker processes publish reports and get stop flags; no per-trial state remains."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with Client(cluster) as c:
            opt = Scripted(daskhpo.Space(SPACE), seed=4, prune_at=2)
            exp = daskhpo.build_experiment("procs", SPACE, algorithm=opt, seed=4)
            exp.workon(curve, max_trials=30, client=c, wait=0.01)
            ds = exp.history
            positive = ds.x.values > 0
            assert (ds.status.values[positive] == "pruned").all()
            assert (ds.status.values[~positive] == "completed").all()
            assert len(set(ds.worker.values)) == 2
            # reports reached the optimizer live, from both processes
            assert len(opt.reports) == int(np.isfinite(ds.reported_objective.values).sum())
            assert set(c.run(reporting.active_trials).values()) == {0}
            topics = c.run_on_scheduler(lambda dask_scheduler: [t for t in dask_scheduler._broker._topics if "daskhpo" in t])
            assert len(topics) <= 1  # one topic per workon call, none per trial
            # the client-side handler that distributed keeps after unsubscribing holds nothing
            assert all(h.target is None for t, h in c._event_handlers.items() if "daskhpo" in t)


# -- report(wait=...): the decision arrives before the next step runs ---------------------------

WAIT_LOG: dict[str, list] = {"ran": [], "returned": [], "pruned": []}


def waiting_curve(x, steps=6):
    trial = reporting.current_trial()
    for step in range(1, steps + 1):
        WAIT_LOG["ran"].append((trial, step))  # the step's work
        try:
            daskhpo.report(step, objective=abs(x) + 1.0 / step, wait=True)
        except daskhpo.TrialPruned:
            WAIT_LOG["pruned"].append((trial, step))
            raise
        WAIT_LOG["returned"].append((trial, step, time.perf_counter()))
    return abs(x)


class Timed(Scripted):
    """Scripted, noting when each decision was made (the cluster runs in this process)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.decided: dict[tuple[int, float], float] = {}

    def report(self, report):
        decision = super().report(report)
        self.decided[(report.trial_id, report.step)] = time.perf_counter()
        return decision


def test_a_waiting_report_gets_its_decision_before_the_next_step(client):
    for log in WAIT_LOG.values():
        log.clear()
    opt = Timed(daskhpo.Space(SPACE), seed=5, prune_at=3)
    exp = daskhpo.build_experiment("wait", SPACE, algorithm=opt, seed=5)
    exp.workon(waiting_curve, max_trials=10, client=client)
    ds = exp.history
    positive = ds.x.values > 0
    assert positive.any() and (~positive).any()
    assert (ds.status.values[positive] == "pruned").all() and (ds.status.values[~positive] == "completed").all()
    # every pruned trial stopped at the report decided on (step 3): step 4 never ran
    pruned_trials = set(ds.trial.values[positive].tolist())
    assert sorted(WAIT_LOG["pruned"]) == sorted((t, 3) for t in pruned_trials)
    assert not [r for r in WAIT_LOG["ran"] if r[0] in pruned_trials and r[1] > 3]
    assert (ds.last_step.values[positive] == 3).all()
    # each report returned only after its decision was made
    assert len(WAIT_LOG["returned"]) == 6 * (~positive).sum() + 2 * positive.sum()
    for trial, step, returned in WAIT_LOG["returned"]:
        assert returned >= opt.decided[(trial, float(step))]


def test_a_wait_without_an_answer_times_out_and_goes_on(client):
    from daskhpo.engine import TrialTask, run_trial

    def objective():
        t0 = time.perf_counter()
        daskhpo.report(1, objective=1.0, wait=0.2)  # nobody listens to the topic below
        return time.perf_counter() - t0

    outcome = client.submit(run_trial, objective, TrialTask(0, {}, "wait-alone", topic="daskhpo-nobody"), {},
                            pure=False).result()
    assert outcome.record.status == "completed"
    assert 0.2 <= outcome.record.objective < 2


@pytest.mark.parametrize("wait", [-1, "yes", math.nan])
def test_report_wait_must_be_a_bool_or_seconds(wait):
    from daskhpo.engine import TrialTask, run_trial

    def objective():
        daskhpo.report(1, objective=1.0, wait=wait)
        return 1.0

    outcome = run_trial(objective, TrialTask(0, {}, "bad-wait"), {})
    assert outcome.record.status == "broken"
    assert "wait must be True, False or seconds >= 0" in outcome.record.error


def test_report_wait_zero_does_not_wait():
    from daskhpo.engine import TrialTask, run_trial

    def objective():
        daskhpo.report(1, objective=1.0, wait=0)
        return 1.0

    assert run_trial(objective, TrialTask(0, {}, "no-wait"), {}).record.status == "completed"
