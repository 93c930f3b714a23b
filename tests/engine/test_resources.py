"""Resources per configuration (``workon(resources=callable)``) and GPUs shared by trials.

Unit tests of the requests (:mod:`daskhpo.engine.resources`) and of the device allocator
(:mod:`daskhpo.devices`) run in the fast lane; the rest runs on in-process Dask workers
that declare ``GPU`` resources (no real GPU is needed: Dask counts, daskhpo names devices).
"""

from __future__ import annotations

import logging
import threading

import pytest
from distributed import Client, LocalCluster, get_worker

import daskhpo
from daskhpo.devices import DeviceAllocator, TrialDevices, visible_devices
from daskhpo.engine.resources import TrialResources, check_request, fits, largest, slots_on
from daskhpo.engine.worker import TrialTask, run_trial
from daskhpo.reporting import current_trial
from tests.helpers_rendezvous import Rendezvous

SPACE = {"layers": "randint(1, 16)", "x": "uniform(0, 1)"}


def per_layers(params):
    return {"GPU": 2 if params["layers"] > 8 else 1}


# -- requests ---------------------------------------------------------------------------
@pytest.mark.parametrize("value, message", [
    ({"GPU": -1}, "'GPU' must be a finite number >= 0"),
    ({"GPU": float("nan")}, "finite number"),
    ({"GPU": float("inf")}, "finite number"),
    ({"GPU": True}, "'GPU' must be a number, got True"),
    ({"GPU": "1"}, "'GPU' must be a number"),
    ({1: 1}, "names must be non-empty strings"),
    ({"GPU": 1.5}, "share of one device (<= 1) or whole devices"),
    (["GPU"], "must be a dict"),
])
def test_bad_requests_are_refused_naming_resources(value, message):
    with pytest.raises(ValueError, match="resources") as info:
        check_request(value)
    assert message in str(info.value)


def test_requests_fixed_or_per_configuration():
    assert TrialResources({"GPU": 0.5, "MEM": 2.0}).of({"x": 1}) == {"GPU": 0.5, "MEM": 2}
    assert TrialResources(None).of({"x": 1}) is None and TrialResources({}).fixed is None
    per = TrialResources(per_layers)
    assert per.per_trial and per.fixed is None
    assert per.of({"layers": 12}) == {"GPU": 2} and per.of({"layers": 3}) == {"GPU": 1}
    assert TrialResources(lambda p: {}).of({"layers": 3}) is None  # no request
    with pytest.raises(ValueError, match="resources must be a dict or a callable"):
        TrialResources("GPU=1")


@pytest.mark.parametrize("fn, message", [
    (lambda p: {"GPU": p["missing"]}, "raised KeyError: 'missing'"),
    (lambda p: None, "must be a dict of resource name -> amount, got None"),
    (lambda p: {"GPU": -2}, "'GPU' must be a finite number >= 0, got -2.0"),
])
def test_a_bad_callable_is_named_with_the_trial_and_its_params(fn, message):
    with pytest.raises(ValueError) as info:
        TrialResources(fn).of({"layers": 3}, trial=7)
    text = str(info.value)
    assert text.startswith("resources(params) for trial 7 with params {'layers': 3}") and message in text


def test_slots_and_fits_as_dask_counts_them():
    assert slots_on({"GPU": 0.5}, {"GPU": 1}, nthreads=4) == 2
    assert slots_on({"GPU": 0.25}, {"GPU": 1}, nthreads=2) == 2  # threads bound it too
    assert slots_on({"GPU": 0.1}, {"GPU": 1}, nthreads=16) == 9  # 1.0 - 9 * 0.1 < 0.1, as in Dask
    assert slots_on({"GPU": 2}, {"GPU": 1}, nthreads=4) == 0
    assert slots_on({"GPU": 0}, {}, nthreads=4) == 0  # Dask: the worker must declare the resource
    assert slots_on({"GPU": 0}, {"GPU": 1}, nthreads=4) == 4
    assert slots_on(None, {}, nthreads=3) == 3
    assert fits({"GPU": 2}, {"GPU": 2, "MEM": 1}) and not fits({"GPU": 1, "MEM": 2}, {"GPU": 2, "MEM": 1})
    assert largest({"GPU": 4}, {"a": {"GPU": 1}, "b": {"GPU": 2}, "c": {}}) == ("b", {"GPU": 2})


# -- the device allocator -------------------------------------------------------------------
def test_fractional_trials_pack_onto_one_device_and_whole_ones_take_free_devices():
    gpus = DeviceAllocator(["0", "1"])
    quarters = [gpus.acquire(0.25) for _ in range(4)]
    assert {d.ids for d in quarters} == {("0",)} and gpus.load == [1.0, 0.0]
    whole = gpus.acquire(1)
    assert whole == TrialDevices(("1",), (1,), 1.0)
    for d in quarters:
        gpus.release(d)
    gpus.release(whole)
    assert gpus.load == [0.0, 0.0]
    half = gpus.acquire(0.5)
    assert half.ids == ("0",)
    assert gpus.acquire(1).ids == ("1",)  # the free device, not the half-used one
    assert gpus.acquire(0.5).ids == ("0",)  # best fit: the half-used device
    assert gpus.load == [1.0, 1.0]


def test_whole_gpu_requests_get_distinct_devices_and_two_get_both():
    gpus = DeviceAllocator(["2", "3"])
    a, b = gpus.acquire(1), gpus.acquire(1)
    assert {a.ids, b.ids} == {("2",), ("3",)}
    gpus.release(a)
    gpus.release(b)
    both = gpus.acquire(2)
    assert both.ids == ("2", "3") and both.ordinals == (0, 1) and both.cuda_visible_devices == "2,3"
    assert gpus.acquire(0) is None and DeviceAllocator([]).acquire(1) is None


def test_fragmented_shares_make_a_whole_trial_share_a_device_with_a_warning(caplog):
    gpus = DeviceAllocator(["0", "1"])
    a, b, c = gpus.acquire(0.5), gpus.acquire(0.5), gpus.acquire(0.5)
    assert [a.ids, b.ids, c.ids] == [("0",), ("0",), ("1",)]
    gpus.release(a)  # 0.5 free on each device, 1.0 in all: Dask may send a whole-GPU trial
    with caplog.at_level(logging.WARNING, logger="daskhpo.devices"):
        whole = gpus.acquire(1)
    assert whole.ids == ("0",) and "it shares device(s) ['0']" in caplog.text


def test_concurrent_acquire_and_release_keep_the_loads_exact():
    gpus = DeviceAllocator(["0", "1"])
    seen = []

    def use():
        for _ in range(200):
            d = gpus.acquire(0.5)
            seen.append(max(gpus.load))
            gpus.release(d)

    threads = [threading.Thread(target=use) for _ in range(4)]  # 4 x 0.5 = what 2 devices hold
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert gpus.load == [0.0, 0.0] and max(seen) <= 1.0


def test_visible_devices_and_the_environment_of_a_program():
    assert visible_devices(environ={"CUDA_VISIBLE_DEVICES": "2, 3"}) == ["2", "3"]
    assert visible_devices(2, environ={}) == ["0", "1"]
    assert visible_devices(2, environ={"CUDA_VISIBLE_DEVICES": ""}) == []  # the job has none
    assert TrialDevices(("4",), (1,), 0.5).environ({"A": "b"}) == {"A": "b", "CUDA_VISIBLE_DEVICES": "4"}


def devices_seen(**params):
    devices = daskhpo.current_trial_devices()
    return {"objective": 0.0, "n": float(len(devices.ids)), "share": devices.share, "ordinal": devices.ordinals[0]}


def test_run_trial_assigns_the_worker_process_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    two = run_trial(devices_seen, TrialTask(0, {}, "a", resources={"GPU": 2}), {})
    assert two.record.gpu == "5,7" and two.record.metrics["n"] == 2
    half = run_trial(devices_seen, TrialTask(1, {}, "b", resources={"GPU": 0.5}), {})
    assert half.record.gpu == "5" and half.record.metrics["share"] == 0.5
    plain = run_trial(lambda: 0.0 if daskhpo.current_trial_devices() is None else 1.0, TrialTask(2, {}, "c"), {})
    assert plain.record.objective == 0.0 and plain.record.gpu == "5,7"  # no GPU asked: what the process sees
    assert daskhpo.current_trial_devices() is None  # outside a trial


# -- on Dask workers declaring GPUs -----------------------------------------------------------
@pytest.fixture(scope="module")
def gpu2_client():
    """One in-process worker of 4 threads declaring GPU=2."""
    with LocalCluster(n_workers=1, threads_per_worker=4, processes=False, resources={"GPU": 2},
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture
def no_cuda_env(monkeypatch):
    """Devices come from the workers' declared ``GPU`` (in-process workers share this environment)."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def asked(layers, x):
    """The trial's Dask task's own resource restrictions, and its devices."""
    worker = get_worker()
    restrictions = worker.state.tasks[worker.get_current_task()].resource_restrictions
    return {"objective": x, "asked": float(restrictions["GPU"]), "devices": float(len(daskhpo.current_trial_devices().ids))}


def test_each_configuration_is_submitted_with_its_own_resources(gpu2_client, no_cuda_env):
    exp = daskhpo.build_experiment("per-config", SPACE, seed=3)
    exp.workon(asked, max_trials=10, client=gpu2_client, resources=per_layers, progress=False)
    ds = exp.history
    assert set(ds["status"].values) == {"completed"}
    expected = [2.0 if layers > 8 else 1.0 for layers in ds["layers"].values]
    assert ds["asked"].values.tolist() == expected and set(expected) == {1.0, 2.0}
    assert ds["devices"].values.tolist() == expected
    for want, gpu in zip(expected, ds["gpu"].values):
        assert gpu == "0,1" if want == 2 else gpu in ("0", "1")


def test_packs_hold_trials_that_ask_the_same(gpu2_client, no_cuda_env):
    exp = daskhpo.build_experiment("per-config-packed", SPACE, seed=4)
    exp.workon(asked, max_trials=10, client=gpu2_client, resources=per_layers, trials_per_task=3, progress=False)
    ds = exp.history
    assert ds["asked"].values.tolist() == [2.0 if layers > 8 else 1.0 for layers in ds["layers"].values]


RENDEZVOUS = Rendezvous()


def meeting(layers, x):
    devices = daskhpo.current_trial_devices()
    met = RENDEZVOUS.meet(current_trial(), devices.cuda_visible_devices)
    return {"objective": x, "met": float(met), "share": devices.share}


def test_half_gpu_trials_run_two_at_a_time_on_one_gpu(no_cuda_env):
    global RENDEZVOUS
    RENDEZVOUS = Rendezvous()
    with LocalCluster(n_workers=1, threads_per_worker=4, processes=False, resources={"GPU": 1},
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster, set_as_default=False) as client:
        exp = daskhpo.build_experiment("halves", SPACE, seed=0)
        exp.workon(meeting, max_trials=6, client=client, resources={"GPU": 0.5}, progress=False)
    ds = exp.history
    assert ds["met"].values.tolist() == [1.0] * 6  # each ran beside another
    assert RENDEZVOUS.peak == 2  # 4 threads, but GPU=1 holds two halves
    assert set(ds["gpu"].values) == {"0"} and set(ds["share"].values) == {0.5}


def test_whole_gpu_trials_running_together_get_distinct_devices(gpu2_client, no_cuda_env):
    global RENDEZVOUS
    RENDEZVOUS = Rendezvous()
    exp = daskhpo.build_experiment("wholes", SPACE, seed=0)
    exp.workon(meeting, max_trials=6, client=gpu2_client, resources={"GPU": 1}, progress=False)
    assert exp.history["met"].values.tolist() == [1.0] * 6
    assert RENDEZVOUS.peak == 2 and all(max(loads.values()) == 1 for loads in RENDEZVOUS.device_loads)
    assert set(exp.history["gpu"].values) == {"0", "1"}


# -- errors ---------------------------------------------------------------------------------
def test_a_raising_callable_ends_the_run_before_the_trial_is_journaled(gpu2_client):
    exp = daskhpo.build_experiment("raises", SPACE, seed=0)
    with pytest.raises(ValueError, match=r"resources\(params\) for trial 0 with params \{.*'layers'.*raised KeyError"):
        exp.workon(asked, max_trials=3, client=gpu2_client, resources=lambda p: {"GPU": p["depth"]}, progress=False)
    assert exp.history.sizes["trial"] == 0


def test_a_request_no_worker_can_hold_is_an_error_not_a_hang(gpu2_client):
    exp = daskhpo.build_experiment("too-big", SPACE, seed=3)
    with pytest.raises(daskhpo.NoWorkersError, match=r"asks for \{'GPU': 4\}, which no connected worker can ever "
                                                     r"hold; the largest, .*, has \{'GPU': 2\}"):
        exp.workon(asked, max_trials=10, client=gpu2_client, resources=lambda p: {"GPU": 4 if p["layers"] > 8 else 1},
                   progress=False)
    assert set(exp.history["status"].values) <= {"completed"}  # the small ones before it ran
    with pytest.raises(daskhpo.NoWorkersError, match=r"resources \{'GPU': 4\}; the largest, .*, has \{'GPU': 2\}"):
        exp.workon(asked, max_trials=10, client=gpu2_client, resources={"GPU": 4}, progress=False)


def test_a_bad_fixed_request_fails_before_any_cluster_starts():
    exp = daskhpo.build_experiment("bad-fixed", SPACE, seed=0)
    with pytest.raises(ValueError, match="resources: 'GPU' must be a finite number >= 0, got -1.0"):
        exp.workon(asked, max_trials=3, resources={"GPU": -1}, progress=False)
