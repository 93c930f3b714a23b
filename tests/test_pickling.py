"""Objectives that cannot travel are named before the first submission; failures are classified."""

from __future__ import annotations

import functools
import pickle
import threading
import types

import pytest
from distributed.client import FutureCancelledError
from distributed.comm.core import CommClosedError, FatalCommClosedError
from distributed.scheduler import KilledWorker

from daskhpo.pickling import UnpicklableObjective, check_picklable, classify_failure, failure_reason

# A user's script, run as __main__: its functions travel by value, with their globals.
SCRIPT = '''
import functools
import threading

LOCK = threading.Lock()
SETTINGS = {"scale": 2.0, "guard": LOCK}

def objective(x):
    with LOCK:
        return x * 2

def helper(x):
    with LOCK:
        return x

def calls_helper(x):
    return helper(x) + 1

def recursive(n):
    return 1 if n <= 1 else n * recursive(n - 1) * (not LOCK.locked())

def in_a_lambda(x):
    return (lambda: LOCK.locked())() or x

def in_a_comprehension(x):
    return sum(y for y in [x] if not LOCK.locked())

def via_a_dict(x):
    return x * SETTINGS["scale"]

def with_default(x, lock=LOCK):
    return x

def with_kwdefault(x, *, lock=LOCK):
    return x

def make_closure():
    lock = threading.Lock()
    def closure(x):
        with lock:
            return x
    return closure

class Model:
    def __init__(self):
        self.lock = threading.Lock()
    def __call__(self, x):
        return x
    def fit(self, x):
        return x

def fine(x, scale=3.0):
    return x * scale * SETTINGS["scale"] if False else x
'''


def _script() -> dict:
    namespace = {"__name__": "__main__"}
    exec(compile(SCRIPT, "user_script.py", "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def script():
    return _script()


def _check(fn, **kwargs) -> UnpicklableObjective:
    with pytest.raises(UnpicklableObjective) as info:
        check_picklable(fn, **kwargs)
    return info.value


@pytest.mark.parametrize(
    "name, culprit",
    [
        ("objective", "global 'LOCK' (a _thread.lock)"),
        ("calls_helper", "global 'helper' (function helper) -> global 'LOCK' (a _thread.lock)"),
        ("in_a_lambda", "global 'LOCK' (a _thread.lock)"),
        ("recursive", "global 'LOCK' (a _thread.lock)"),
        ("in_a_comprehension", "global 'LOCK' (a _thread.lock)"),
        ("via_a_dict", "global 'SETTINGS' (a dict) -> ['guard'] (a _thread.lock)"),
        ("with_default", "default of 'lock' (a _thread.lock)"),
        ("with_kwdefault", "default of 'lock' (a _thread.lock)"),
    ],
)
def test_the_global_that_cannot_travel_is_named(script, name, culprit):
    exc = _check(script[name])
    message = str(exc)
    assert f"objective {name} (module '__main__')" in message
    assert exc.culprit == culprit
    assert culprit in message
    assert "cannot pickle '_thread.lock' object" in message
    assert isinstance(exc, TypeError)
    assert str(pickle.loads(pickle.dumps(exc))) == message


def test_closures_partials_methods_and_callable_objects(script):
    exc = _check(script["make_closure"]())
    assert exc.culprit == "closure variable 'lock' (a _thread.lock)"
    assert "make_closure.<locals>.closure" in str(exc)

    exc = _check(functools.partial(script["fine"], scale=threading.Lock()))
    assert exc.culprit == "partial keyword 'scale' (a _thread.lock)"
    assert "objective fine (module '__main__')" in str(exc)

    model = script["Model"]()
    exc = _check(model)
    assert exc.culprit == "attribute 'lock' (a _thread.lock)"
    assert "objective Model instance (module '__main__')" in str(exc)

    exc = _check(model.fit)
    assert exc.culprit == "the method's instance (a __main__.Model) -> attribute 'lock' (a _thread.lock)"
    assert "Model.fit" in str(exc)


def test_fn_kwargs_that_cannot_travel_are_named(script):
    exc = _check(script["fine"], fn_kwargs={"data": [1, 2], "lock": threading.RLock()})
    assert exc.culprit.startswith("fn_kwargs['lock'] (a _thread.RLock)")
    assert "fn_kwargs['lock']" in str(exc)


def test_what_travels_passes_and_its_size_is_returned(script):
    import math

    assert 0 < check_picklable(math.sqrt) < 200  # by reference: only the name is sent
    assert check_picklable(script["fine"], fn_kwargs={"scale": 2.0}) > 0
    assert check_picklable(lambda x: x + 1) > 0


def test_an_object_that_pickles_but_does_not_unpickle(script):
    exc = _check(script["fine"], fn_kwargs={"bad": _LoadsBadly()})
    assert "fn_kwargs['bad']" in str(exc) and "cannot be loaded here" in str(exc)


def _refuse():
    raise RuntimeError("cannot be loaded here")


class _LoadsBadly:
    def __reduce__(self):
        return (_refuse, ())


def test_on_a_real_cluster_dask_fails_without_naming_the_global_and_the_check_names_it(client):
    fn = _script()["objective"]
    with pytest.raises(TypeError) as today:
        client.submit(fn, 1, pure=False).result(timeout=30)
    # Today's error: the graph, not the objective's global, is named.
    assert "Could not serialize object" in str(today.value)
    assert "'LOCK'" not in str(today.value) and "global" not in str(today.value)

    exc = _check(fn)
    assert "objective objective (module '__main__')" in str(exc)
    assert "global 'LOCK'" in str(exc) and "_thread.lock" in str(exc)

    fine = _script()["fine"]
    check_picklable(fine)
    assert client.submit(fine, 4, pure=False).result(timeout=30) == 4


# -- classify_failure ------------------------------------------------------------------------------


def test_a_real_deserialization_error_on_the_worker_is_broken_not_lost(client):
    future = client.submit(lambda value: value, _NeedsAMissingModule(), pure=False)
    exc = future.exception(timeout=30)
    # Dask: RuntimeError('Error during deserialization of the task graph...') from the real error
    assert exc is not None
    assert classify_failure(exc) == "broken"
    assert "could not be unpickled on the cluster" in failure_reason(exc)
    assert "only_on_my_laptop" in failure_reason(exc)


def _missing_module():
    raise ModuleNotFoundError("No module named 'only_on_my_laptop'")


class _NeedsAMissingModule:
    """Pickles here; unpickling (on the worker) fails as a module missing there would."""

    def __reduce__(self):
        return (_missing_module, ())


@pytest.mark.parametrize(
    "exc, kind, words",
    [
        (KilledWorker("k", types.SimpleNamespace(address="tcp://n1:1"), 3), "lost", "worker or its connection"),
        (CommClosedError("in <TCP ...>: Stream is closed"), "lost", "CommClosedError"),
        (FatalCommClosedError("boom"), "lost", "lost"),
        (ConnectionResetError(104, "Connection reset by peer"), "lost", "lost"),
        (FutureCancelledError("k", "scheduler-connection-lost"), "lost", "lost"),
        (FutureCancelledError("k", "scheduler-restart"), "lost", "lost"),
        (FutureCancelledError("k", "lost dependencies"), "lost", "lost"),
        (FutureCancelledError("k", None), "broken", "cancelled outside daskhpo (reason: unknown)"),
        (ModuleNotFoundError("No module named 'mylib'"), "broken", "could not be unpickled on the cluster"),
        (pickle.UnpicklingError("bad"), "broken", "could not be unpickled"),
        (FileNotFoundError(2, "No such file"), "broken", "outside the objective"),
        (MemoryError(), "broken", "MemoryError"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v)[:20],
)
def test_classify_failure(exc, kind, words):
    assert classify_failure(exc) == kind
    assert words in failure_reason(exc)


class CountingObjective:
    """A callable that counts how often it is pickled (in this process)."""

    pickled = 0

    def __call__(self, x):
        return x**2

    def __reduce__(self):
        type(self).pickled += 1
        return (CountingObjective, ())


def test_the_objective_is_pickled_once_per_run_not_per_trial(client):
    import daskhpo

    CountingObjective.pickled = 0
    exp = daskhpo.build_experiment("pickled-once", {"x": "uniform(-1, 1)"}, seed=0)
    exp.workon(CountingObjective(), max_trials=20, client=client)
    assert len(exp.records()) == 20 and {r.status for r in exp.records()} == {"completed"}
    assert CountingObjective.pickled <= 3  # the check (pickle, size) and the run's one pickle


def test_pickled_objective_travels_as_bytes_and_a_function_unpickles_once_per_process():
    from daskhpo.pickling import PickledObjective

    objective = PickledObjective(CountingObjective())
    CountingObjective.pickled = 0
    sent = pickle.dumps(objective)  # as with each task: the bytes, not the objective again
    assert CountingObjective.pickled == 0
    first, again = pickle.loads(sent), pickle.loads(pickle.dumps(objective))
    # an object may keep state: each trial gets its own copy, as before
    assert isinstance(first, CountingObjective) and first is not again
    assert first(3) == 9 and "CountingObjective" in repr(objective)
    function = PickledObjective(lambda x: x + 1)
    assert pickle.loads(pickle.dumps(function)) is pickle.loads(pickle.dumps(function))  # cached
