"""ASHA and Hyperband: promotions on synthetic curves, both ways of spending resource."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from distributed import Client, LocalCluster

import daskhpo
from daskhpo.optimizers import CONTINUE, PRUNE, Optimizer, Report, Suggestion, Trial, make_optimizer
from daskhpo.optimizers.asha import rung_resources

REPORTS = daskhpo.Space({"q": "uniform(0, 1)"})
FIDELITY = daskhpo.Space({"q": "uniform(0, 1)", "epochs": "fidelity(1, 81, base=3)"})


def curve(q: float, t: float) -> float:
    """Synthetic learning curve: final value q, rank-preserving, decreasing in t."""
    return q + 1.0 / t


def test_rungs():
    assert rung_resources(1, 81, 3) == [1, 3, 9, 27, 81]
    assert rung_resources(1, 100, 3) == [1, 3, 9, 27, 81, 100]
    assert rung_resources(2, 10, 2) == [2, 4, 8, 10]


def test_defaults_from_the_fidelity_dimension_and_errors():
    opt = make_optimizer("asha", FIDELITY, 0)
    assert (opt.min_resource, opt.max_resource, opt.reduction_factor) == (1, 81, 3)
    assert opt.config == {"min_resource": 1, "max_resource": 81, "reduction_factor": 3, "sampler": "random"}
    with pytest.raises(ValueError, match="min_resource < max_resource"):
        make_optimizer(("asha", {"min_resource": 9, "max_resource": 3}), REPORTS, 0)
    with pytest.raises(ValueError, match="reduction_factor"):
        make_optimizer(("asha", {"reduction_factor": 1}), REPORTS, 0)
    with pytest.raises(ValueError, match="outside the fidelity"):
        make_optimizer(("asha", {"max_resource": 243}), FIDELITY, 0)
    with pytest.raises(ValueError, match="invalid configuration"):
        make_optimizer(("asha", {"eta": 3}), REPORTS, 0)


def test_stopping_rule_by_hand():
    """Rung 0 results arrive as 5, 3, 1, 4, 2, 6, 0.5 (eta=3): keep the best n // 3."""
    opt = make_optimizer(("asha", {"min_resource": 1, "max_resource": 9, "reduction_factor": 3}), REPORTS, 0)
    decisions = []
    for trial_id, value in enumerate([5, 3, 1, 4, 2, 6, 0.5]):
        decisions.append(opt.report(Report(trial_id, {"q": 0.5}, 1, float(value))))
    # n=1, 2: nothing goes up before the rung has 3 results; n=3: 1 is the best; n=4: 4
    # is not; n=5: 2 is second of 5 (keep 1); n=6: keep 2, 6 is last; n=7: 0.5 is the best
    assert decisions == [PRUNE, PRUNE, CONTINUE, PRUNE, PRUNE, PRUNE, CONTINUE]
    # once pruned, always pruned; a step between rungs changes nothing
    assert opt.report(Report(1, {"q": 0.5}, 2, 0.0)) == PRUNE
    assert opt.report(Report(2, {"q": 0.5}, 2, 9.0)) == CONTINUE
    # rung 1 (resource 3): the first to enter it is stopped (n // 3 = 0)
    assert opt.report(Report(2, {"q": 0.5}, 3, 0.1)) == PRUNE


def run_reports(opt, n_trials: int, steps: int = 81) -> tuple[dict[int, int], list[tuple[int, float]]]:
    """Sequentially run trials that report every step until pruned; return last steps."""
    last, configs = {}, []
    for trial_id in range(n_trials):
        q = opt.ask(trial_id).params["q"]
        configs.append((trial_id, q))
        for t in range(1, steps + 1):
            last[trial_id] = t
            if opt.report(Report(trial_id, {"q": q}, t, curve(q, t))) == PRUNE:
                break
        status = "pruned" if last[trial_id] < steps else "completed"
        opt.tell(Trial(trial_id, {"q": q}, status, curve(q, last[trial_id]), last_step=float(last[trial_id])))
    return last, configs


def test_reports_mode_promotions_on_synthetic_curves():
    opt = make_optimizer(("asha", {"min_resource": 1, "max_resource": 81, "reduction_factor": 3}), REPORTS, 7)
    last, configs = run_reports(opt, 200)
    # stops happen only at rungs
    assert set(last.values()) <= {1, 3, 9, 27, 81}
    # with rank-preserving curves a trial goes on past a rung iff it ranks in the top
    # n // 3 of the n results there so far (itself included)
    for k, r in enumerate([1, 3, 9, 27]):
        entered = [(tid, q) for tid, q in configs if last[tid] >= r]
        for i, (tid, q) in enumerate(entered):
            rank = sum(q2 < q for _, q2 in entered[: i + 1])
            assert (last[tid] > r) == (rank < (i + 1) // 3), (k, tid)
    # the configurations trained to the end are among the best few percent
    qs = sorted(q for _, q in configs)
    assert all(q <= qs[len(qs) // 20] for tid, q in configs if last[tid] == 81)
    assert any(last[tid] == 81 for tid, _ in configs)
    # most of the budget is saved
    assert sum(last.values()) < 0.25 * 81 * 200


def run_fidelity(opt, n_trials: int, batch: int = 1) -> list[tuple[int, Suggestion]]:
    """Ask ``batch`` at a time, tell each result; return every suggestion by trial id."""
    done, trial_id = [], 0
    while trial_id < n_trials:
        pending = []
        for _ in range(batch):
            s = opt.ask(trial_id)
            if s is None:
                break
            pending.append((trial_id, s))
            trial_id += 1
        if not pending:
            break
        for tid, s in pending:
            value = curve(s.params["q"], s.params["epochs"])
            opt.tell(Trial(tid, s.params, "completed", value, parent=s.parent, checkpoint=s.checkpoint))
            done.append((tid, s))
    return done


@pytest.mark.parametrize("batch", [1, 4])
def test_fidelity_mode_promotions(batch):
    opt = make_optimizer("asha", FIDELITY, 3)
    done = run_fidelity(opt, 300, batch)
    by_id = dict(done)
    seen_results: dict[int, list[tuple[float, int]]] = {}
    promoted_from: set[int] = set()
    for tid, s in done:
        assert s.params["epochs"] in (1, 3, 9, 27, 81)
        if s.parent is None:
            assert s.params["epochs"] == 1 and s.checkpoint is None
        else:
            parent = by_id[s.parent]
            assert s.checkpoint == s.parent and parent.params["q"] == s.params["q"]
            assert s.params["epochs"] == 3 * parent.params["epochs"]
            assert s.parent not in promoted_from  # never promoted twice
            promoted_from.add(s.parent)
            # the parent was in the top n//3 of its rung's results told before this ask
            rung = seen_results[parent.params["epochs"]]
            ranked = sorted(rung)
            assert (curve(parent.params["q"], parent.params["epochs"]), s.parent) in ranked[: len(ranked) // 3]
        if batch == 1:
            seen_results.setdefault(s.params["epochs"], []).append((curve(s.params["q"], s.params["epochs"]), tid))
        else:  # results of the same batch are told after all its asks
            pass
        if batch > 1 and (tid + 1) % batch == 0:
            for t2, s2 in done[tid + 1 - batch: tid + 1]:
                seen_results.setdefault(s2.params["epochs"], []).append((curve(s2.params["q"], s2.params["epochs"]), t2))
    top = [s for _, s in done if s.params["epochs"] == 81]
    assert top, "some configuration reached max_resource"
    # the configurations run at 81 are among the best seen at rung 1
    qs = sorted(s.params["q"] for _, s in done if s.params["epochs"] == 1)
    assert all(s.params["q"] <= qs[len(qs) // 3] for s in top)


@pytest.mark.parametrize("name", ["asha", "hyperband"])
def test_fidelity_mode_resumes_and_is_deterministic(name):
    original = make_optimizer(name, FIDELITY, 5)
    done = run_fidelity(original, 60)
    assert [s for _, s in done] == [s for _, s in run_fidelity(make_optimizer(name, FIDELITY, 5), 60)]
    resumed = make_optimizer(name, FIDELITY, 5)
    for tid, s in done:
        resumed.tell(Trial(tid, s.params, "completed", curve(s.params["q"], s.params["epochs"]), parent=s.parent))
    nxt = [original.ask(60 + i) for i in range(6)]
    assert [resumed.ask(60 + i) for i in range(6)] == nxt


class Counting(Optimizer):
    """A custom sampler: q = 0.1, 0.2, ... then nothing."""

    name = "counting"

    def ask(self, trial_id):
        self.n = getattr(self, "n", 0) + 1
        return Suggestion({"q": self.n / 10, "epochs": 81}) if self.n <= 9 else None

    def tell(self, trial):
        self.told = getattr(self, "told", 0) + 1


def test_pluggable_sampler():
    custom = Counting(FIDELITY, seed=0)
    opt = make_optimizer(("asha", {"sampler": custom}), FIDELITY, 0)
    done = run_fidelity(opt, 100)
    fresh = [s.params["q"] for _, s in done if s.parent is None]
    assert fresh == [pytest.approx(i / 10) for i in range(1, 10)]
    assert custom.told == 9  # told each trial that started a configuration
    # exhausted sampler and nothing promotable: the run ends
    assert opt.ask(1000) is None and len(done) < 100
    grid = make_optimizer(("hyperband", {"sampler": ("grid", {"n_values": 3})}), REPORTS, 0)
    assert [grid.ask(i).params["q"] for i in range(3)] == [0.0, 0.5, 1.0] and grid.ask(3) is None
    assert grid.config["sampler"] == ["grid", {"n_values": 3}]
    with pytest.raises(ValueError, match="sampler"):
        make_optimizer(("asha", {"sampler": "asha"}), REPORTS, 0)


def test_hyperband_brackets():
    opt = make_optimizer(("hyperband", {"min_resource": 1, "max_resource": 81, "reduction_factor": 3}), FIDELITY, 1)
    assert [b.rungs[0] for b in opt.brackets] == [1, 3, 9, 27, 81]
    starts = [opt.ask(i).params["epochs"] for i in range(400) if True]
    counts = {e: starts.count(e) for e in (1, 3, 9, 27, 81)}
    # the most aggressive bracket gets the most new configurations, the least the fewest
    assert counts[1] > counts[3] > counts[9] > counts[27] > counts[81] > 0
    # reports mode: a trial of the top bracket is never stopped
    rep = make_optimizer("hyperband", REPORTS, 1)
    last, _ = run_reports(rep, 150)
    top = [t for t in last if rep._bracket[t] == len(rep.brackets) - 1]
    assert top and all(last[t] == 81 for t in top)
    assert any(last[t] < 81 for t in last)


# -- on a real cluster ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=4, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        with Client(cluster) as c:
            yield c


_EPOCH = threading.Event()


def learn(q, epochs=27):
    for t in range(1, epochs + 1):
        daskhpo.report(t, objective=curve(q, t))
        _EPOCH.wait(0.004)  # an epoch takes time: decisions arrive while training
    return curve(q, epochs)


def learn_from_checkpoint(q, epochs):
    state = daskhpo.load_checkpoint() or {"t": 0, "trained": 0}
    for t in range(state["t"] + 1, epochs + 1):
        state = {"t": t, "trained": state["trained"] + 1}
        daskhpo.report(t, objective=curve(q, t), checkpoint=state)
    return {"objective": curve(q, epochs), "trained_here": float(epochs - (daskhpo.load_checkpoint() or {"t": 0})["t"])}


def test_asha_with_reports_on_a_cluster(client):
    algo = ("asha", {"min_resource": 1, "max_resource": 9, "reduction_factor": 3})
    exp = daskhpo.build_experiment("asha-reports", {"q": "uniform(0, 1)"}, algorithm=algo, seed=0)
    exp.workon(learn, max_trials=40, client=client, epochs=9)
    ds = exp.history
    assert set(ds.status.values) == {"completed", "pruned"}
    assert (ds.last_step.values[ds.status.values == "completed"] == 9).all()
    # pruned near a rung (asynchronously: a few steps late at most)
    assert ds.reported_objective.notnull().sum() < 0.6 * 40 * 9
    assert exp.best["objective"] < 0.3 + 1 / 9


def test_asha_with_a_fidelity_dimension_continues_from_checkpoints(client):
    space = {"q": "uniform(0, 1)", "epochs": "fidelity(1, 27, base=3)"}
    exp = daskhpo.build_experiment("asha-fid", space, algorithm="asha", seed=1)
    exp.workon(learn_from_checkpoint, max_trials=40, client=client)
    ds = exp.history
    assert (ds.status.values == "completed").all()
    promoted = ds.parent.values >= 0
    assert promoted.any()
    # a promotion trains only the epochs its parent had not: it starts from the checkpoint
    for i in np.flatnonzero(promoted):
        parent_epochs = int(ds.epochs.sel(trial=int(ds.parent.values[i])))
        assert ds.trained_here.values[i] == ds.epochs.values[i] - parent_epochs
        assert ds.checkpoint_from.values[i] == ds.parent.values[i]
    assert not math.isnan(exp.best["objective"])


def test_asha_resumes_from_stored_reports(client, tmp_path):
    """The rungs rebuilt from the stored history equal the live optimizer's.

    Resume replays reports and results in the order the live optimizer heard them (the
    journal's sequence numbers), so this holds with several trials in flight, their
    reports interleaved.
    """
    algo = ("asha", {"min_resource": 1, "max_resource": 27, "reduction_factor": 3})
    path = tmp_path / "asha.nc"
    exp = daskhpo.build_experiment("asha-resume", {"q": "uniform(0, 1)"}, algorithm=algo, storage=path, seed=2)
    exp.workon(learn, max_trials=20, client=client, n_workers=4)
    live = exp.optimizer.brackets[0].results
    resumed = daskhpo.build_experiment("asha-resume", {"q": "uniform(0, 1)"}, algorithm=algo, storage=path)
    assert resumed.optimizer.brackets[0].results == live
    assert resumed.optimizer._judged == exp.optimizer._judged
    resumed.workon(learn, max_trials=30, client=client)
    assert len(resumed.history.trial) == 30 and resumed.history.reported_objective.dims == ("trial", "step")


@pytest.mark.parametrize("algorithm", ["asha", "hyperband"])
def test_defaults_first_trial_is_recorded_as_it_ran(algorithm):
    """Trial 0 was asked at the lowest rung, but ran the defaults at the top fidelity: its
    result sits in the top rung, and a configuration is promoted with the params that ran."""
    opt = make_optimizer((algorithm, {"min_resource": 1, "max_resource": 9, "reduction_factor": 3}), FIDELITY, 0)
    asked = opt.ask(0)
    ran = {"q": 0.01, "epochs": 81}
    assert asked.params != ran
    opt.tell(Trial(0, ran, "completed", curve(0.01, 81)))
    assert opt.pending == ()
    bracket = opt.brackets[opt._bracket[0]]
    assert [0 in rung for rung in bracket.results] == [False] * (len(bracket.rungs) - 1) + [True]
    assert opt._params[0]["q"] == 0.01
    # a told trial that ran at its rung's resource stays in that rung
    s = opt.ask(1)
    opt.tell(Trial(1, s.params, "completed", curve(s.params["q"], s.params["epochs"])))
    assert 1 in opt.brackets[opt._bracket[1]].results[opt._rung[1]]
