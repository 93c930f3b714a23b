"""Checkpoint retention: what a running or future trial may start from is never deleted."""

from __future__ import annotations

import math
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daskhpo.store.checkpoints import CheckpointStore


@pytest.fixture(params=["memory", "disk"])
def make(request, tmp_path):
    def factory(**kwargs):
        path = None if request.param == "memory" else tmp_path / "exp.nc"
        return CheckpointStore(path, **kwargs)

    return factory


def _fill(store, ids, objectives=None):
    for i in ids:
        objective = None if objectives is None else objectives[i]
        store.put(i, ("object", {"weights": i}), objective=objective)


def test_keep_all_deletes_nothing(make):
    store = make()
    _fill(store, range(5))
    assert store.retain(needed=set()) == []
    assert store.ids() == [0, 1, 2, 3, 4]


def test_keep_n_most_recent_plus_needed(make):
    store = make(keep=2)
    _fill(store, range(6))
    assert store.retain(needed={1}) == [0, 2, 3]
    assert store.ids() == [1, 4, 5]
    assert store.get(1) == ("object", {"weights": 1})
    assert store.get(0) is None and 0 not in store
    _fill(store, [6])
    assert store.retain(needed={1, 4}) == []  # 5 and 6 are the two most recent
    assert store.retain(needed={1}) == [4]
    assert store.ids() == [1, 5, 6]


def test_keep_zero_keeps_only_the_needed(make):
    store = make(keep=0)
    _fill(store, range(4))
    assert store.retain(needed=[2, 99]) == [0, 1, 3]
    assert store.ids() == [2]


def test_keep_best_by_objective_plus_needed(make):
    store = make(keep="best")
    objectives = {0: 0.5, 1: 0.1, 2: math.nan, 3: 0.3, 4: 0.9}
    _fill(store, range(5), objectives)
    assert store.retain(needed={4}) == [0, 2, 3]
    assert store.ids() == [1, 4]
    two = make(keep="best", n_best=2)
    _fill(two, range(5), objectives)
    two.retain(needed=())
    assert set(two.ids()) >= {1, 3}


def test_unknown_needs_delete_nothing(make):
    store = make(keep=0)
    _fill(store, range(3))
    assert store.retain(needed=None) == []
    assert store.ids() == [0, 1, 2]


def test_best_after_a_resume_uses_the_given_objectives(tmp_path):
    first = CheckpointStore(tmp_path / "exp.nc", keep="best")
    _fill(first, range(4))  # objectives not known to this store
    second = CheckpointStore(tmp_path / "exp.nc", keep="best")
    assert second.ids() == [0, 1, 2, 3]
    deleted = second.retain(needed={0}, objectives={0: 1.0, 1: 3.0, 2: -1.0, 3: 2.0})
    assert deleted == [1, 3]
    assert second.ids() == [0, 2]
    # a leftover temporary file of a crashed write is no checkpoint
    open(os.path.join(second.directory, "trial-7.pkl.tmp-123"), "wb").close()
    assert second.ids() == [0, 2]


@pytest.mark.parametrize(
    "keep, n_best", [("some", 1), (-1, 1), (True, 1), (1.5, 1), ("best", 0), ("best", True)]
)
def test_bad_policies_are_refused_by_name(keep, n_best):
    with pytest.raises(ValueError, match="keep_checkpoints"):
        CheckpointStore(None, keep=keep, n_best=n_best)


@settings(max_examples=int(os.environ.get("DASKHPO_HYPOTHESIS_EXAMPLES", 60)), deadline=None)
@given(
    ids=st.sets(st.integers(0, 30), max_size=12),
    needed=st.sets(st.integers(0, 35), max_size=6),
    keep=st.one_of(st.just("all"), st.just("best"), st.integers(0, 5)),
    n_best=st.integers(1, 3),
    objectives=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=31, max_size=31),
)
def test_needed_checkpoints_always_survive_and_the_policy_is_exact(ids, needed, keep, n_best, objectives):
    store = CheckpointStore(None, keep=keep, n_best=n_best)
    _fill(store, sorted(ids), dict(enumerate(objectives)))
    deleted = store.retain(needed=needed)
    survivors = set(store.ids())
    assert needed & ids <= survivors
    assert survivors | set(deleted) == ids and not survivors & set(deleted)
    if keep == "all":
        assert survivors == ids
    elif keep == "best":
        scored = sorted((objectives[i], i) for i in ids if math.isfinite(objectives[i]))
        assert survivors == (needed & ids) | {i for _, i in scored[:n_best]}
    else:
        assert survivors == (needed & ids) | set(sorted(ids)[-keep:] if keep else [])


# -- wired into experiments: keep_checkpoints= --------------------------------------------
PBT_SPACE = {"q": "uniform(0, 1)", "epochs": "fidelity(1, 27, base=3)"}
PBT = ("pbt", {"population_size": 4, "perturbation_interval": 3})


class Segment:
    """A PBT segment: trains from the loaded checkpoint to ``epochs``; Ctrl-C at a call."""

    def __init__(self, interrupt_at=None):
        self.interrupt_at, self.calls = interrupt_at, 0

    def __call__(self, q, epochs):
        import daskhpo

        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        start = daskhpo.load_checkpoint()
        started_from = -1.0 if start is None else float(start["epochs"])
        daskhpo.report(epochs, objective=q + 1.0 / epochs, checkpoint={"epochs": epochs, "q": q})
        return {"objective": q + 1.0 / epochs, "started_from": started_from}


def test_pbt_with_keep_checkpoints_keeps_few_files_and_resumes(tmp_path):
    import os

    import daskhpo
    from daskhpo.engine import FakeExecutor

    path = str(tmp_path / "pbt.nc")
    directory = f"{path}.checkpoints"
    peak = []

    def build():
        exp = daskhpo.build_experiment("pbt", PBT_SPACE, algorithm=PBT, storage=path, seed=2, keep_checkpoints=2)
        exp.subscribe(lambda record: peak.append(len(os.listdir(directory))))
        return exp

    exp = build()
    with pytest.raises(KeyboardInterrupt):
        exp.run(FakeExecutor(Segment(interrupt_at=12), slots=4), max_trials=30)
    exp.close()
    resumed = build()
    resumed.run(FakeExecutor(Segment(), slots=4), max_trials=30)
    records = resumed.records()
    assert sum(r.status in ("completed", "pruned") for r in records) == 30
    epochs = {r.trial: r.params["epochs"] for r in records}
    starts = [r for r in records if r.checkpoint_from is not None and r.status == "completed"]
    assert len(starts) >= 20
    for r in starts:  # every segment found the checkpoint it was told to start from
        assert r.metrics["started_from"] == epochs[r.checkpoint_from], r
    # 4 members' last segments, up to 4 running trials' sources, 2 most recent
    assert max(peak) <= 4 + 4 + 2, peak
    assert len(os.listdir(directory)) <= 4 + 2
    resumed.close()


def test_keep_checkpoints_is_checked_and_all_keeps_everything(tmp_path):
    import os

    import daskhpo
    from daskhpo.engine import FakeExecutor

    with pytest.raises(ValueError, match="keep_checkpoints"):
        daskhpo.build_experiment("pbt", PBT_SPACE, algorithm=PBT, keep_checkpoints="some")
    path = str(tmp_path / "all.nc")
    exp = daskhpo.build_experiment("pbt", PBT_SPACE, algorithm=PBT, storage=path, seed=2)
    exp.run(FakeExecutor(Segment(), slots=4), max_trials=12)
    assert len(os.listdir(f"{path}.checkpoints")) == 12
    exp.close()


def test_asha_promotions_find_their_checkpoints_with_keep_zero(tmp_path):
    import os

    import daskhpo
    from daskhpo.engine import FakeExecutor

    space = {"q": "uniform(0, 1)", "epochs": "fidelity(1, 9, base=3)"}
    path = str(tmp_path / "asha.nc")
    exp = daskhpo.build_experiment("asha", space, algorithm="asha", storage=path, seed=4, keep_checkpoints=0)
    exp.run(FakeExecutor(Segment(), slots=4), max_trials=40)
    records = exp.records()
    epochs = {r.trial: r.params["epochs"] for r in records}
    promoted = [r for r in records if r.checkpoint_from is not None]
    assert promoted
    assert all(r.metrics["started_from"] == epochs[r.checkpoint_from] for r in promoted)
    needed = exp.optimizer.needed_checkpoints()
    assert set(exp._checkpoints.ids()) == needed  # nothing else kept with keep=0
    assert len(os.listdir(f"{path}.checkpoints")) < 40
    exp.close()


# A script whose checkpoint is an instance of a class of its own __main__: Dask sends
# `train` and `Model` to the worker process by value (cloudpickle), so the worker's Model
# is not an attribute of any module there, and plain pickle cannot save it.
MAIN_CLASS_SCRIPT = '''
from distributed import Client, LocalCluster

import daskhpo


class Model:
    def __init__(self):
        self.epoch = 0


def train(x):
    model = daskhpo.load_checkpoint() or Model()
    for epoch in range(model.epoch + 1, 3):
        model.epoch = epoch
        daskhpo.report(step=epoch, objective=x, checkpoint=model)
    return x


if __name__ == "__main__":
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        exp = daskhpo.build_experiment("main-class", {"x": "uniform(0, 1)"}, storage="main.nc", seed=0)
        exp.workon(train, max_trials=2, client=client, max_broken=10, progress=False)
        print("statuses", sorted(exp.history["status"].values.tolist()))
        print("errors", [e for e in exp.history["error"].values.tolist() if e])
        from daskhpo.store.checkpoints import CheckpointStore
        from daskhpo.reporting import decode_checkpoint
        state = decode_checkpoint(CheckpointStore("main.nc").get(0))
        print("checkpoint", type(state).__name__, state.epoch)
'''


def test_checkpoint_of_a_class_defined_in_the_scripts_main(tmp_path):
    """A class of ``__main__`` sent to worker processes by value is checkpointed (cloudpickle)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    (tmp_path / "script.py").write_text(MAIN_CLASS_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "statuses ['completed', 'completed']" in done.stdout, done.stdout + done.stderr[-3000:]
    assert "checkpoint Model 2" in done.stdout, done.stdout


def test_checkpoints_pickled_by_older_versions_still_load():
    import pickle

    from daskhpo.reporting import decode_checkpoint, encode_checkpoint

    assert decode_checkpoint(("pickle", pickle.dumps({"weights": [1, 2]}))) == {"weights": [1, 2]}
    kind, data = encode_checkpoint({"weights": [1, 2]})
    assert kind == "pickle" and pickle.loads(data) == {"weights": [1, 2]}  # readable without cloudpickle's API
