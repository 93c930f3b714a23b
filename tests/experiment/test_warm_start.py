"""Warm starts: ``Experiment.enqueue`` and ``build_experiment(..., warm_start=path)``."""

from __future__ import annotations

import numpy as np
import pytest

import daskhpo
from daskhpo.engine import FakeExecutor
from daskhpo.experiment import WARM_START_ID
from daskhpo.optimizers.random import RandomSearch

SPACE = {"lr": "loguniform(1e-5, 1)", "layers": "randint(1, 8)", "act": "choices(['relu', 'tanh'])"}


def loss(lr, layers, act):
    return (np.log10(lr) + 3) ** 2 + (layers - 3) ** 2 + (act == "tanh")


class Recording(RandomSearch):
    """Random search that keeps the ids and objectives it is told."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.told = []

    def tell(self, trial):
        self.told.append((trial.id, trial.objective))
        super().tell(trial)


def test_enqueued_configurations_run_next_in_order_and_partial_ones_are_completed():
    exp = daskhpo.build_experiment("q", SPACE, seed=0)
    exp.enqueue({"lr": 1e-3, "layers": 3, "act": "relu"})
    exp.enqueue({"layers": 5})
    assert exp.enqueued == [{"lr": 1e-3, "layers": 3, "act": "relu"}, {"layers": 5}]
    exp.run(FakeExecutor(loss, slots=1), max_trials=5)
    records = exp.records()
    assert records[0].params == {"lr": 1e-3, "layers": 3, "act": "relu"}
    assert records[0].objective == 0.0 and exp.best["trial"] == 0
    assert records[1].params["layers"] == 5
    # the other values are the optimizer's own suggestion for that trial
    assert records[1].params["lr"] == RandomSearch(exp.space, seed=0).ask(1).params["lr"]
    assert exp.enqueued == []
    exp.enqueue({"layers": 2})  # later: runs next in the same experiment
    exp.run(FakeExecutor(loss, slots=1), max_trials=6)
    assert exp.records()[5].params["layers"] == 2


def test_enqueue_validates_against_the_space_naming_the_parameter():
    exp = daskhpo.build_experiment("q", SPACE, seed=0)
    with pytest.raises(ValueError, match="'layers'"):
        exp.enqueue({"layers": 20})
    with pytest.raises(ValueError, match="'act'"):
        exp.enqueue({"act": "sigmoid"})
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['depth'\]"):
        exp.enqueue({"depth": 3})
    assert exp.enqueued == []


def test_defaults_are_the_first_enqueued_configuration():
    space = {"x": daskhpo.uniform(0, 1, default_value=0.25), "n": daskhpo.randint(1, 5, default_value=2)}
    exp = daskhpo.build_experiment("d", space, algorithm="tpe", seed=0)
    assert exp.enqueued == [{"x": 0.25, "n": 2}]
    exp.enqueue({"x": 0.5})
    exp.run(FakeExecutor(lambda x, n: x + n, slots=2), max_trials=4)
    assert exp.records()[0].params == {"x": 0.25, "n": 2}
    assert exp.records()[1].params["x"] == 0.5


def test_enqueue_does_not_take_an_asha_promotion_s_turn():
    space = {"x": "uniform(0, 1)", "epochs": "fidelity(1, 9, 3)"}
    exp = daskhpo.build_experiment("a", space, algorithm="asha", seed=0)
    exp.run(FakeExecutor(lambda x, epochs: x, slots=1), max_trials=12)
    for _ in range(3):
        exp.enqueue({"x": 0.0})
    exp.run(FakeExecutor(lambda x, epochs: x, slots=1), max_trials=30)
    ds = exp.history
    zero, new = ds["x"].values == 0.0, ds["parent"].values == -1
    assert (zero & new).sum() == 3  # each ran as a new configuration at the lowest rung
    assert set(ds["epochs"].values[zero & new]) == {1}
    # promotions kept their turn: the best (x = 0) went up the rungs as ASHA decided
    assert (zero & ~new).sum() >= 1 and set(ds["parent"].values[zero & ~new]) <= set(ds["trial"].values[zero])


def stored(tmp_path, name="source", n=20, seed=0, direction="minimize"):
    path = tmp_path / f"{name}.nc"
    exp = daskhpo.build_experiment(name, SPACE, storage=path, seed=seed, direction=direction)
    exp.run(FakeExecutor(loss, slots=3), max_trials=n)
    exp.close()
    return path


def test_warm_start_tells_the_other_experiment_s_trials_first_without_copying_them(tmp_path):
    source = stored(tmp_path)
    src = daskhpo.load_experiment(source).history
    by_order = np.argsort(src["order"].values)
    recording = Recording(daskhpo.Space(SPACE), seed=1)
    path = tmp_path / "warm.nc"
    exp = daskhpo.build_experiment("warm", SPACE, algorithm=recording, storage=path, warm_start=source)
    assert [t for t, _ in recording.told] == [WARM_START_ID + k for k in range(20)]
    np.testing.assert_allclose([v for _, v in recording.told], src["objective"].values[by_order])
    exp.run(FakeExecutor(loss), max_trials=5)
    assert len(exp.history["trial"]) == 5  # not copied, not counted
    assert exp.attrs["warm_start"] == str(source)
    exp.close()
    # resume tells them again, before this experiment's own trials
    again_rec = Recording(daskhpo.Space(SPACE), seed=1)
    again = daskhpo.build_experiment("warm", SPACE, algorithm=again_rec, storage=path)
    assert [t for t, _ in again_rec.told] == [t for t, _ in recording.told]
    with pytest.raises(ValueError, match="warm_start"):
        daskhpo.build_experiment("warm", SPACE, storage=path, warm_start=tmp_path / "other.nc")
    again.close()


def test_warm_started_tpe_starts_near_the_known_optimum(tmp_path):
    source = stored(tmp_path, n=40)
    gaps = {}
    for warm in (None, source):
        exp = daskhpo.build_experiment("t", SPACE, algorithm=("tpe", {"n_initial": 10}), seed=5, warm_start=warm)
        exp.run(FakeExecutor(loss, slots=2), max_trials=10)
        gaps[warm is None] = np.median(exp.history["objective"].values)
    assert gaps[False] < gaps[True]


def test_warm_start_must_be_compatible(tmp_path):
    source = stored(tmp_path)
    with pytest.raises(ValueError, match="same parameter names"):
        daskhpo.build_experiment("w", {"lr": "loguniform(1e-5, 1)"}, warm_start=source)
    narrow = {**SPACE, "layers": "randint(1, 3)"}  # some stored values are outside
    with pytest.raises(ValueError, match="parameter 'layers'"):
        daskhpo.build_experiment("w", narrow, warm_start=source)
    with pytest.raises(ValueError, match="direction"):
        daskhpo.build_experiment("w", SPACE, warm_start=source, direction="maximize")
    with pytest.raises(ValueError, match="pbt"):
        daskhpo.build_experiment("w", {**SPACE, "epochs": "fidelity(1, 8, 2)"}, algorithm="pbt", warm_start=source)
    with pytest.raises(FileNotFoundError):
        daskhpo.build_experiment("w", SPACE, warm_start=tmp_path / "missing.nc")
    wider = {**SPACE, "layers": "randint(1, 20)"}  # compatible: priors contain the values
    assert daskhpo.build_experiment("w", wider, warm_start=source).attrs["warm_start"] == str(source)


def test_experiment_trials_are_told_after_the_warm_start_s(tmp_path):
    """Infeasible trials are penalized against the worst trial told so far, the warm start's
    included: ``Experiment.trials`` gives what the optimizer was told, without the warm start's."""
    def constrained(lr, layers, act):
        return {"objective": loss(lr, layers, act), "constraints": [layers - 4]}

    source = tmp_path / "source.nc"
    src = daskhpo.build_experiment("src", SPACE, seed=0, storage=source)
    src.run(FakeExecutor(lambda **p: 100.0 + loss(**p)), max_trials=6)  # worse than any trial below
    src.close()
    told = []

    class Told(RandomSearch):
        def tell(self, trial):
            told.append(trial)
            super().tell(trial)

    exp = daskhpo.build_experiment("w", SPACE, algorithm=Told(daskhpo.Space(SPACE), seed=2), warm_start=source)
    exp.run(FakeExecutor(constrained, slots=1), max_trials=12)
    own = [t for t in told if t.id < WARM_START_ID]
    assert any(not t.feasible for t in own) and min(t.objective for t in own if not t.feasible) > 100
    assert sorted((t.id, t.objective) for t in exp.trials) == sorted((t.id, t.objective) for t in own)
