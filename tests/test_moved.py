"""Module names from before the package layout (and the docs' short paths) still work."""

from __future__ import annotations

import importlib
import pickle
import subprocess
import sys

import pytest

import daskhpo
from daskhpo._moved import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_module_name_is_the_moved_module_itself(old):
    module = importlib.import_module(f"daskhpo.{old}")
    assert module is importlib.import_module(f"daskhpo.{MOVED[old]}")
    assert getattr(daskhpo, old) is module  # attribute access after `import daskhpo` too


def test_documented_short_paths_work_in_a_fresh_interpreter():
    code = ("import daskhpo\n"
            "from daskhpo.sklearn import SearchCV\n"
            "from daskhpo.client import report_results\n"
            "from daskhpo import plot\n"
            "print(daskhpo.callbacks.TensorBoard.__module__, SearchCV.__module__, plot.__name__)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["daskhpo.integrations.callbacks", "daskhpo.integrations.sklearn", "daskhpo.viz.plot"]


def test_a_pickle_that_names_an_old_module_loads():
    from daskhpo.store.lock import StorageLocked

    # what an older version wrote: the class under its module's old name
    data = pickle.dumps(StorageLocked, protocol=2).replace(b"daskhpo.store.lock", b"daskhpo.storage_lock")
    assert b"daskhpo.storage_lock" in data
    assert pickle.loads(data) is StorageLocked
