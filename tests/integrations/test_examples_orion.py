"""The Orion talk's scripts in examples/ run as written (scaled down by environment variables)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_example(name, tmp_path, **env):
    environ = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "BROWSER": "true", "TMPDIR": str(tmp_path), **env}  # .show() opens the plot with `true`: nothing to see
    done = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name)], cwd=tmp_path, env=environ,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()


def test_orion_rosenbrock_example(tmp_path):
    best = ast.literal_eval(run_example("orion_rosenbrock.py", tmp_path, DASKHPO_EXAMPLE_TRIALS="8")[-1])
    assert best["objective"] == pytest.approx(4 * (best["params"]["x"] - 34.56789) ** 2 + 23.4)


def test_orion_talk_dask_example(tmp_path):
    *_, count, best = run_example("orion_talk_dask.py", tmp_path, DASKHPO_EXAMPLE_TRIALS="4",
                                  DASKHPO_EXAMPLE_WORKERS="2", DASKHPO_EXAMPLE_IN_FLIGHT="2")
    assert count == "4 trials completed"  # workon took create_experiment's max_trials
    best = ast.literal_eval(best)
    assert 0 <= best["objective"] < 0.6 and set(best["params"]) == {"C", "gamma"}
