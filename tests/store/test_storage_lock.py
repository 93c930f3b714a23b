"""One writer per storage path, proven with real processes and real signals."""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from daskhpo.store.lock import StorageLock, StorageLocked

ROOT = Path(__file__).resolve().parents[2]
MODULE = str(ROOT / "daskhpo" / "store" / "lock.py")

HOLDER = textwrap.dedent(
    """
    import importlib.util, sys
    # Loaded by path: the child needs this module only, not the whole package (fast start).
    spec = importlib.util.spec_from_file_location("storage_lock", sys.argv[2])
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    StorageLock, StorageLocked = mod.StorageLock, mod.StorageLocked
    import time
    lock = StorageLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(120)
    """
)

CONTENDER = textwrap.dedent(
    """
    import importlib.util, sys
    # Loaded by path: the child needs this module only, not the whole package (fast start).
    spec = importlib.util.spec_from_file_location("storage_lock", sys.argv[2])
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    StorageLock, StorageLocked = mod.StorageLock, mod.StorageLocked
    try:
        StorageLock(sys.argv[1]).acquire()
    except StorageLocked as exc:
        print("LOCKED:", exc, flush=True)
        sys.exit(3)
    print("acquired", flush=True)
    """
)


RACER = textwrap.dedent(
    """
    import importlib.util, sys, time
    spec = importlib.util.spec_from_file_location("storage_lock", sys.argv[2])
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    start = float(sys.argv[3])
    while time.time() < start:
        time.sleep(0.001)
    try:
        lock = mod.StorageLock(sys.argv[1]).acquire()
    except mod.StorageLocked:
        print("refused", flush=True)
        sys.exit(0)
    print("acquired", flush=True)
    time.sleep(3)
    """
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def _start_holder(storage: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(storage), MODULE],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    line = proc.stdout.readline()
    if line.strip() != "locked":
        proc.kill()
        raise AssertionError(f"holder did not lock: {line!r} {proc.stderr.read()}")
    return proc


@pytest.fixture
def holder(tmp_path):
    storage = tmp_path / "run.nc"
    proc = _start_holder(storage)
    try:
        yield storage, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


def test_second_process_is_refused_with_host_and_pid(holder):
    storage, proc = holder
    out = subprocess.run(
        [sys.executable, "-c", CONTENDER, str(storage), MODULE], capture_output=True, text=True, env=_env(), timeout=60
    )
    assert out.returncode == 3, out.stderr
    assert str(storage) in out.stdout
    assert f"pid {proc.pid}" in out.stdout
    assert socket.gethostname() in out.stdout


def test_this_process_is_refused_and_the_exception_names_the_holder(holder):
    storage, proc = holder
    with pytest.raises(StorageLocked) as info:
        StorageLock(storage).acquire()
    exc = info.value
    assert isinstance(exc, RuntimeError)
    assert exc.path == str(storage)
    assert exc.holder["pid"] == proc.pid
    assert exc.holder["host"] == socket.gethostname()
    assert exc.holder["since"]
    message = str(exc)
    assert repr(str(storage)) in message and f"pid {proc.pid}" in message and "since" in message
    again = pickle.loads(pickle.dumps(exc))
    assert str(again) == message


def test_sigkill_of_the_holder_does_not_block_the_next_one(holder):
    storage, proc = holder
    with pytest.raises(StorageLocked):
        StorageLock(storage).acquire()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    # The stale sidecar is still there; it decides nothing.
    assert json.loads(Path(f"{storage}.lock.json").read_text())["pid"] == proc.pid
    with StorageLock(storage) as lock:
        assert lock.held
        assert lock.holder()["pid"] == os.getpid()
    # and a fresh process can take it once we let go
    out = subprocess.run(
        [sys.executable, "-c", CONTENDER, str(storage), MODULE], capture_output=True, text=True, env=_env(), timeout=60
    )
    assert out.returncode == 0 and "acquired" in out.stdout, out.stdout + out.stderr


def test_a_second_lock_object_in_the_same_process_is_refused(tmp_path):
    storage = tmp_path / "sub" / "run.nc"
    first = StorageLock(storage)
    first.acquire()
    first.acquire()  # idempotent for the holder itself
    try:
        with pytest.raises(StorageLocked, match=f"pid {os.getpid()}.*this very process"):
            StorageLock(storage).acquire()
    finally:
        first.release()
    assert not Path(f"{storage}.lock.json").exists()
    with StorageLock(storage):
        pass


def test_release_lets_the_next_one_in_and_timeout_waits(tmp_path):
    storage = tmp_path / "run.nc"
    lock = StorageLock(storage)
    with lock:
        started = time.monotonic()
        with pytest.raises(StorageLocked):
            StorageLock(storage, timeout=0.3).acquire()
        assert time.monotonic() - started >= 0.25
    assert not lock.held
    lock.release()  # releasing a free lock is harmless
    with StorageLock(storage) as again:
        assert again.held


def test_unreadable_sidecar_still_gives_a_clear_message(tmp_path):
    storage = tmp_path / "run.nc"
    with StorageLock(storage):
        Path(f"{storage}.lock.json").write_text("{not json")
        with pytest.raises(StorageLocked, match="has not \\(yet\\) recorded who it is"):
            StorageLock(storage).acquire()


def test_of_four_processes_starting_together_exactly_one_writes(tmp_path):
    storage = tmp_path / "run.nc"
    start = time.time() + 1.0
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(storage), MODULE, repr(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for _ in range(4)
    ]
    outcomes = []
    for proc in racers:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        outcomes.append(out.strip())
    assert sorted(outcomes) == ["acquired", "refused", "refused", "refused"]
