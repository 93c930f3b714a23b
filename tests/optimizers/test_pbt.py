"""Population based training: exploit/explore, lineage, resume, on a real cluster."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from distributed import Client, LocalCluster

import daskhpo
from daskhpo.optimizers import PRUNE, Report, Trial, make_optimizer

FIDELITY = daskhpo.Space({"lr": "loguniform(1e-3, 1)", "epochs": "fidelity(4, 32)"})


def score(lr: float, epochs: float) -> float:
    """Lower is better; best lr is 0.1."""
    return abs(math.log10(lr) + 1) + 1.0 / epochs


def drive(opt, n: int, batch: int = 3) -> list:
    done, tid = [], 0
    while tid < n:
        pending = []
        for _ in range(batch):
            s = opt.ask(tid)
            if s is None:
                break
            pending.append((tid, s))
            tid += 1
        if not pending:
            break
        for t, s in pending:
            opt.tell(Trial(t, s.params, "completed", score(s.params["lr"], s.params["epochs"]), parent=s.parent, checkpoint=s.checkpoint))
            done.append((t, s))
    return done


def test_options_are_checked():
    with pytest.raises(ValueError, match="population_size"):
        make_optimizer(("pbt", {"population_size": 1}), FIDELITY, 0)
    with pytest.raises(ValueError, match="perturbation_interval"):
        make_optimizer(("pbt", {"perturbation_interval": 0}), FIDELITY, 0)
    opt = make_optimizer(("pbt", {"population_size": 4}), FIDELITY, 0)
    assert opt.config["population_size"] == 4 and opt.perturbation_interval == 4


def test_fidelity_mode_segments_exploit_and_lineage():
    opt = make_optimizer(("pbt", {"population_size": 8, "perturbation_interval": 4}), FIDELITY, 0)
    done = drive(opt, 1000)
    assert opt.ask(10_000) is None  # every member reached the top fidelity
    # 8 members x segments to 4, 8, ..., 32, less the segments skipped by exploits (a
    # member exploiting takes over the source's progress)
    assert 8 * 2 < len(done) <= 8 * 8
    final = [s for _, s in done if s.params["epochs"] == 32]
    assert len(final) == 8
    by_id = dict(done)
    exploits = 0
    for _tid, s in done:
        if s.parent is None:
            assert s.params["epochs"] == 4 and s.checkpoint is None
            continue
        # a segment goes 4 epochs past the checkpoint it starts from
        assert s.params["epochs"] == by_id[s.checkpoint].params["epochs"] + 4
        if s.checkpoint != s.parent:
            exploits += 1
            # exploited params are the source's, explored (x0.8, x1.2 or redrawn)
            assert s.params["lr"] != by_id[s.checkpoint].params["lr"]
    assert exploits > 0
    # the members' chains follow parent back to their first trial
    roots = set()
    for tid, s in done:
        while s.parent is not None:
            tid, s = s.parent, by_id[s.parent]
        roots.add(tid)
    assert roots == set(range(8))
    # exploitation pulls the population towards the best lr
    first = [s.params["lr"] for _, s in done[:8]]
    last = [s.params["lr"] for _, s in done[-8:]]
    assert np.median([abs(math.log10(x) + 1) for x in last]) < np.median([abs(math.log10(x) + 1) for x in first])


def test_fidelity_mode_resumes_with_lineage():
    original = make_optimizer(("pbt", {"population_size": 6, "perturbation_interval": 4}), FIDELITY, 2)
    done = drive(original, 30, batch=1)
    resumed = make_optimizer(("pbt", {"population_size": 6, "perturbation_interval": 4}), FIDELITY, 2)
    for t, s in done:
        resumed.tell(Trial(t, s.params, "completed", score(s.params["lr"], s.params["epochs"]), parent=s.parent, checkpoint=s.checkpoint))
    assert [resumed.ask(30 + i) for i in range(4)] == [original.ask(30 + i) for i in range(4)]


def test_reports_mode_pauses_a_segment():
    opt = make_optimizer(("pbt", {"population_size": 2, "perturbation_interval": 5}), daskhpo.Space({"lr": "loguniform(1e-3, 1)"}), 0)
    s = opt.ask(0)
    decisions = [opt.report(Report(0, s.params, step, 1.0)) for step in range(1, 8)]
    assert decisions.index(PRUNE) == 4  # at step 5


# -- on a real cluster ---------------------------------------------------------------------

_EPOCH = threading.Event()


def train(lr, max_epochs=24):
    """A member's training: continues from its checkpoint; reports every epoch."""
    state = daskhpo.load_checkpoint() or {"epoch": 0, "quality": 0.0, "lrs": []}
    for epoch in range(state["epoch"] + 1, max_epochs + 1):
        quality = state["quality"] + (1 - abs(math.log10(lr) + 1) / 3)
        state = {"epoch": epoch, "quality": quality, "lrs": state["lrs"] + [lr]}
        daskhpo.report(epoch, objective=-quality / epoch, checkpoint=state)
        _EPOCH.wait(0.003)
    return {"objective": -state["quality"] / max_epochs}


def test_pbt_with_reports_on_a_cluster():
    with LocalCluster(n_workers=4, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            algo = ("pbt", {"population_size": 4, "perturbation_interval": 6})
            exp = daskhpo.build_experiment("pbt", {"lr": "loguniform(1e-3, 1)"}, algorithm=algo, seed=0)
            exp.workon(train, client=client)  # until every member finished
    ds = exp.history
    status = ds.status.values
    assert (status == "completed").sum() == 4 and set(status) == {"completed", "pruned"}
    reported = ds.reported_objective
    for i, tid in enumerate(ds.trial.values):
        src = int(ds.checkpoint_from.values[i])
        steps = reported.step.values[np.isfinite(reported.values[i])]
        if not len(steps):
            # paused just after its last epoch: the next segment had nothing left to train
            assert status[i] == "completed" and int(ds.last_step.sel(trial=src)) == 24
            continue
        # each trial continues from the step its checkpoint was at
        expected = 1 if src < 0 else int(ds.last_step.sel(trial=src)) + 1
        assert int(steps[0]) == expected, (tid, int(steps[0]), expected)
        if status[i] == "completed":
            assert ds.last_step.values[i] == 24
    # lineage: chains by parent start at the 4 first trials; exploits take another's checkpoint
    parent = dict(zip(ds.trial.values.tolist(), ds.parent.values.tolist()))
    roots = set()
    for tid in parent:
        while parent[tid] >= 0:
            tid = parent[tid]
        roots.add(tid)
    assert roots == {0, 1, 2, 3}
    assert (ds.checkpoint_from.values != ds.parent.values).any()


def test_reports_mode_member_ends_even_when_paused_at_its_last_step():
    """Paused after its last report, a member's next trial returns at once: it is done."""
    space = daskhpo.Space({"lr": "loguniform(1e-3, 1)"})
    opt = make_optimizer(("pbt", {"population_size": 2, "perturbation_interval": 5}), space, 0)
    a, b = opt.ask(0), opt.ask(1)
    opt.tell(Trial(0, a.params, "pruned", 0.5, last_step=10.0))
    opt.tell(Trial(1, b.params, "completed", 0.4, last_step=10.0))
    nxt = opt.ask(2)
    assert nxt.parent == 0
    opt.tell(Trial(2, nxt.params, "completed", 0.5, parent=nxt.parent, checkpoint=nxt.checkpoint))  # no reports
    assert opt.ask(3) is None


DEFAULTS = daskhpo.Space({"lr": "loguniform(1e-3, 1, default_value=0.1)"})


@pytest.mark.parametrize("status", ["pruned", "broken"])
def test_defaults_first_trial_member_learns_what_ran(status):
    """Trial 0 was asked for, then ran the defaults: its member goes on with the defaults."""
    opt = make_optimizer(("pbt", {"population_size": 2, "perturbation_interval": 5}), DEFAULTS, 0)
    a, b = opt.ask(0), opt.ask(1)
    defaults = DEFAULTS.defaults()
    assert a.params != defaults
    opt.tell(Trial(0, defaults, status, 0.1 if status == "pruned" else math.nan, last_step=5.0))
    opt.tell(Trial(1, b.params, "pruned", 0.9, last_step=5.0))
    nxt = opt.ask(2)
    assert opt._member_of[2] == 0 and nxt.params == defaults
    assert nxt.parent == (0 if status == "pruned" else None)


@pytest.mark.parametrize("space", [DEFAULTS, daskhpo.Space({"lr": "loguniform(1e-3, 1, default_value=0.1)", "epochs": "fidelity(4, 32)"})])
@pytest.mark.parametrize("ask_first", [True, False])
@pytest.mark.parametrize("defaults_status", ["completed", "broken"])
def test_a_member_never_runs_two_trials_at_once(space, ask_first, defaults_status):
    """Defaults as trial 0, whether PBT was asked for it (the experiment) or not (older
    histories): in-flight trials belong to distinct members, and none is left pending."""
    opt = make_optimizer(("pbt", {"population_size": 4, "perturbation_interval": 4}), space, 1)
    statuses = ["pruned", "completed", "broken", "pruned", "lost"]
    in_flight: dict[int, object] = {}
    if ask_first:
        in_flight[0] = opt.ask(0)
    tid = 1
    for round_ in range(12):
        while len(in_flight) < (4 if ask_first else 5):  # one slot per member, and one more
            s = opt.ask(tid)
            if s is None:
                break
            in_flight[tid] = s
            tid += 1
        members = [opt._member_of[t] for t in opt.pending]
        assert len(members) == len(set(members)), (round_, opt.pending, members)
        if not in_flight and (round_ > 0 or ask_first):
            break
        if round_ == 0:  # the defaults ran as trial 0
            in_flight.pop(0, None)
            value = 0.2 if defaults_status == "completed" else math.nan
            opt.tell(Trial(0, space.defaults(), defaults_status, value, last_step=4.0))
            continue
        t, s = min(in_flight.items())
        del in_flight[t]
        status = statuses[t % len(statuses)]
        value = score(s.params["lr"], s.params.get("epochs", 8)) if status in ("completed", "pruned") else math.nan
        opt.tell(Trial(t, s.params, status, value, parent=s.parent, checkpoint=s.checkpoint, last_step=4.0 * round_))
    for t, s in in_flight.items():
        opt.tell(Trial(t, s.params, "lost", parent=s.parent, checkpoint=s.checkpoint))
    assert opt.pending == ()
