"""Resume replays the event log in its original order: a resumed optimizer decides as the live one.

Each run has 4+ trials in flight with durations that make trials finish (and report) out of
their id order, and is interrupted mid-run (Ctrl-C in an objective) with trials in flight.
The optimizer's calls are recorded live; the resumed optimizer must have been told exactly
the same sequence of reports and results (of the trials that finished), and make the same
decisions as a fresh optimizer fed that sequence.
"""

from __future__ import annotations

import math

import pytest

import daskhpo
from daskhpo.engine import FakeExecutor
from daskhpo.optimizers import Optimizer, Report, make_optimizer

SPACE = {"q": "uniform(0, 1)", "lr": "loguniform(1e-3, 1)"}
FIDELITY = {"q": "uniform(0, 1)", "lr": "loguniform(1e-3, 1)", "epochs": "fidelity(1, 27, base=3)"}

CASES = {
    "asha": (SPACE, ("asha", {"min_resource": 1, "max_resource": 27, "reduction_factor": 3})),
    "hyperband": (SPACE, ("hyperband", {"min_resource": 1, "max_resource": 27, "reduction_factor": 3})),
    "pbt": (FIDELITY, ("pbt", {"population_size": 6, "perturbation_interval": 3})),
    "evolution": (SPACE, ("evolution", {"population_size": 6, "tournament_size": 3})),
    # the sampler learns pruned configurations' estimates, which depend on the order of events
    "race": (SPACE, ("race", {"sampler": ("tpe", {"n_initial": 5}), "instances": 9, "first_test": 3})),
}


class Recorder(Optimizer):
    """Delegates to another optimizer and logs every report and result it is given."""

    name = "recorder"

    def __init__(self, inner: Optimizer) -> None:
        super().__init__(inner.space, inner.seed)
        self.inner, self.log = inner, []

    @property
    def config(self):
        return self.inner.config

    def ask(self, trial_id):
        return self.inner.ask(trial_id)

    def tell(self, trial):
        self.log.append(("tell", trial))
        self.inner.tell(trial)

    def report(self, report):
        decision = self.inner.report(report)
        self.log.append(("report", report, decision))
        return decision


class Objective:
    """Reports a learning curve; Ctrl-C at its ``interrupt_at``-th call."""

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.interrupt_at, self.calls = interrupt_at, 0

    def __call__(self, q, lr, epochs=9):
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        start = daskhpo.load_checkpoint() or 0
        value = math.nan
        for t in range(int(start) + 1, int(epochs) + 1):
            value = q + abs(math.log10(lr) + 1) / 3 + 1.0 / t
            daskhpo.report(t, objective=value, checkpoint=t)
        return value


def duration(params) -> float:
    # 1 to 4 virtual seconds: finishing order differs from the id order
    return 1 + 3 * params["q"]


def feed(optimizer: Optimizer, log) -> None:
    for entry in log:
        if entry[0] == "tell":
            optimizer.tell(entry[1])
        else:
            optimizer.report(entry[1])


@pytest.mark.parametrize("name", list(CASES))
def test_interrupted_run_resumes_in_the_live_order(name, tmp_path):
    space, algorithm = CASES[name]
    path = tmp_path / f"{name}.nc"
    live = Recorder(make_optimizer(algorithm, daskhpo.Space(space), 7))
    exp = daskhpo.build_experiment(name, space, algorithm=live, storage=path, snapshot_interval=0.0)
    with pytest.raises(KeyboardInterrupt):
        exp.run(FakeExecutor(Objective(interrupt_at=30), duration=duration, slots=5), max_trials=200)
    finished = {r.trial for r in exp.records()}
    assert len(finished) >= 10
    # reports interleaved between trials: the order matters for these algorithms
    reporters = [e[1].trial_id for e in live.log if e[0] == "report"]
    assert any(a != b for a, b in zip(reporters, reporters[1:]))
    expected = [e for e in live.log if (e[1].id if e[0] == "tell" else e[1].trial_id) in finished]

    resumed = Recorder(make_optimizer(algorithm, daskhpo.Space(space), 7))
    again = daskhpo.build_experiment(name, space, algorithm=resumed, storage=path)
    assert [e[:2] for e in resumed.log] == [e[:2] for e in expected]
    assert [e[2] for e in resumed.log if e[0] == "report"] == [e[2] for e in expected if e[0] == "report"]

    # the same decisions as a fresh optimizer fed the live sequence
    fresh = make_optimizer(algorithm, daskhpo.Space(space), 7)
    feed(fresh, expected)
    next_id = max(finished) + 100
    for i in range(8):
        assert resumed.ask(next_id + i) == fresh.ask(next_id + i)
    probe = Report(next_id, {"q": 0.5, "lr": 0.1, **({"epochs": 27} if "epochs" in space else {})}, 3, 0.9)
    assert resumed.inner.report(probe) == fresh.report(probe)

    # and the resumed run goes on to its budget, each trial recorded once
    again.run(FakeExecutor(Objective(), duration=duration, slots=5), max_trials=40)
    records = again.records()
    assert len({r.trial for r in records}) == len(records)
    assert sum(r.status in ("completed", "pruned") for r in records) >= 40 or again.optimizer.ask(10_000) is None
