"""The cluster ``workon`` starts when it is given no client: a plain script needs no main guard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# No `if __name__ == "__main__":` guard, a storage path (which a re-imported script would find
# locked), and an objective that reports where it ran and what its process listens on.
SCRIPT = '''
import json
import os

import psutil

import daskhpo


def where(x):
    listening = [c.laddr.ip for c in psutil.Process().net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    return {"objective": x ** 2, "pid": os.getpid(), "listening": len(listening),
            "listening_not_loopback": sum(ip not in ("127.0.0.1", "::1") for ip in listening)}


experiment = daskhpo.build_experiment("no-guard", {"x": "uniform(-1, 1)"}, storage="no-guard.nc", seed=0)
records = []
experiment.workon(lambda x: where(x), max_trials=4, callbacks=[records.append], progress=False)
print(json.dumps({"script_pid": os.getpid(), "statuses": [r["status"] for r in records],
                  "metrics": [r["metrics"] for r in records]}))
'''


def test_a_script_without_main_guard_runs_its_trials_in_its_own_process_on_loopback(tmp_path):
    (tmp_path / "search.py").write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "search.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Traceback" not in done.stderr, done.stderr[-4000:]  # no worker re-ran the script and failed
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["statuses"] == ["completed"] * 4
    for metrics in result["metrics"]:
        assert metrics["pid"] == result["script_pid"]  # worker threads of the script's process
        # the Dask dashboard and the workers' HTTP servers: loopback only, never 0.0.0.0
        assert metrics["listening"] >= 1 and metrics["listening_not_loopback"] == 0, metrics
