"""Ctrl-C during a search, as a user presses it: one message, the history kept, resume works.

Each test runs a script (or ``daskhpo hunt``) in a session of its own and sends ``SIGINT``
to its whole process group, as a terminal does (the worker processes of a local cluster get
it too), once trials have finished: it waits for the lines the script prints, never for a
time.  Before (issue 23): some 95 lines of nanny, asyncio and distributed tracebacks for a
cluster of two worker processes, 52 lines of the library's frames in-process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import daskhpo

ROOT = Path(__file__).resolve().parents[2]
#: what must not appear on standard error after a Ctrl-C
FOREIGN = ("distributed", "tornado", "asyncio", "Process Dask Worker", "concurrent", "Exception in thread")

#: the README's Quick start, with trials slow enough to be interrupted, and told on stdout
QUICK_START = """
import os, time
import daskhpo

def rosenbrock(x, y, a=1, b=100):
    time.sleep(float(os.environ.get("TRIAL_S", "0.2")))
    return (a - x) ** 2 + b * (y - x ** 2) ** 2

def told(record):
    print("finished", record["trial"], flush=True)

def main():
    experiment = daskhpo.build_experiment(
        "random-rosenbrock",
        space={"x": "uniform(-5, 5)", "y": "uniform(-5, 5)"},
        algorithm="random",
        storage="random-rosenbrock.nc",
        seed=0,
    )
    experiment.workon(rosenbrock, max_trials=int(os.environ.get("MAX_TRIALS", "1000")), callbacks=[told]CLIENT)
    print("best", experiment.best, flush=True)
"""
#: as pasted: no guard, the implicit in-process cluster
IN_PROCESS = QUICK_START.replace("CLIENT", "") + "\nmain()\n"
#: a LocalCluster of worker processes (which needs the guard)
PROCESSES = QUICK_START.replace("CLIENT", ", client=client") + """
if __name__ == "__main__":
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster, Client(cluster) as client:
        main()
"""


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **extra}


def _interrupt_after(proc: subprocess.Popen, finished: int) -> tuple[str, str]:
    """Read stdout until ``finished`` trials are told, press Ctrl-C (the process group), return
    the rest of stdout and all of stderr."""
    seen = 0
    for line in proc.stdout:
        seen += line.startswith("finished ")
        if seen >= finished:
            break
    assert seen >= finished, f"the script ended before {finished} trials: {proc.communicate(timeout=60)}"
    os.killpg(proc.pid, signal.SIGINT)
    return proc.communicate(timeout=120)


def _check_one_message(err: str) -> None:
    lines = err.strip().splitlines()
    assert not [f for f in FOREIGN if f in err], err
    assert err.count("Traceback") == 1, err  # the user's own line's, nothing else's
    assert len(lines) <= 10, err
    assert lines[-1].startswith("KeyboardInterrupt: search interrupted: "), err
    assert "stored in random-rosenbrock.nc" in lines[-1] and "run again continues" in lines[-1], err


@pytest.mark.parametrize("script", [IN_PROCESS, PROCESSES], ids=["in-process", "processes"])
def test_ctrl_c_says_one_thing_keeps_the_history_and_resumes(tmp_path: Path, script: str) -> None:
    (tmp_path / "search.py").write_text(textwrap.dedent(script))
    proc = subprocess.Popen([sys.executable, "search.py"], cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    out, err = _interrupt_after(proc, 3)
    # an interrupted Python program: killed by SIGINT after the traceback (status 130 in a shell)
    assert proc.returncode == -signal.SIGINT, (proc.returncode, err)
    _check_one_message(err)
    assert "best" not in out
    stored = daskhpo.load_experiment(tmp_path / "random-rosenbrock.nc")
    completed = int((stored.history["status"] == "completed").sum())
    assert completed >= 3
    assert f"search interrupted: {stored.history.sizes['trial']} finished trials" in err
    # the same script again resumes: it ends at max_trials, counting what was stored
    again = subprocess.run([sys.executable, "search.py"], cwd=tmp_path, env=_env(TRIAL_S="0", MAX_TRIALS=str(completed + 4)),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    resumed = daskhpo.load_experiment(tmp_path / "random-rosenbrock.nc").history
    assert int((resumed["status"] == "completed").sum()) == completed + 4
    assert resumed["trial"].values.tolist()[:completed] == stored.history["trial"].values.tolist()[:completed]


def test_hunt_ctrl_c_is_one_line_and_status_130(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(textwrap.dedent("""
        import argparse, time
        parser = argparse.ArgumentParser()
        parser.add_argument("--x", type=float)
        args = parser.parse_args()
        time.sleep(0.3)
        print("objective:", args.x ** 2)
    """))
    proc = subprocess.Popen([sys.executable, "-m", "daskhpo.integrations.cli", "hunt", "-n", "h", "--storage", "h.nc",
                             "--max-trials", "1000", "--workers", "2", "--", sys.executable, "train.py", "--x~uniform(-1, 1)"],
                            cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    # each finished trial leaves its result behind in its directory; wait for 3 of them
    trials = tmp_path / "h.nc.trials"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        done = [d for d in trials.glob("*") if "objective:" in _read(d / "stdout.txt")] if trials.is_dir() else []
        if len(done) >= 3:
            break
        time.sleep(0.05)  # polling the condition itself, with a deadline
    assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, err)
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("daskhpo hunt: search interrupted: ") and "h.nc" in err, err
    # what the line says is what is stored (a program's output may precede its record by a moment)
    stored = int((daskhpo.load_experiment(tmp_path / "h.nc").history["status"] == "completed").sum())
    assert stored >= 1 and f"interrupted: {stored} finished trials stored in" in err, err


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def test_interrupting_a_notebook_cell_drains_and_the_next_cell_goes_on(tmp_path: Path, monkeypatch) -> None:
    """The kernel's interrupt (Jupyter's stop button: SIGINT to the kernel's process group)."""
    manager = pytest.importorskip("jupyter_client.manager")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("PYTHONPATH", _env()["PYTHONPATH"])  # the kernel inherits it
    km, kc = manager.start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        search = kc.execute(textwrap.dedent("""
            import time, daskhpo
            def f(x):
                time.sleep(0.2)
                return x * x
            experiment = daskhpo.build_experiment("k", {"x": "uniform(-1, 1)"}, storage="k.nc", seed=0)
            experiment.workon(f, max_trials=1000, callbacks=[lambda r: print("finished", r["trial"], flush=True)])
        """))
        shown, errors, interrupted = [], [], False
        while True:  # the cell's messages, in order, until the kernel is idle again
            msg = kc.get_iopub_msg(timeout=120)
            if msg["parent_header"].get("msg_id") != search:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                shown.append(content["text"])
                if not interrupted and "".join(shown).count("finished ") >= 2:
                    km.interrupt_kernel()
                    interrupted = True
            elif kind == "error":
                errors.append(content)
            elif kind == "status" and content["execution_state"] == "idle":
                break
        assert [e["ename"] for e in errors] == ["KeyboardInterrupt"]
        assert errors[0]["evalue"].startswith("search interrupted: ") and "k.nc" in errors[0]["evalue"]
        assert not [f for f in FOREIGN if f in "".join(shown)], shown
        # the kernel lives on, and so does the experiment: the next cell continues it
        reply = kc.execute_interactive("n = experiment.history.sizes['trial']\n"
                                       "experiment.workon(f, max_trials=n + 2, progress=False)\n"
                                       "assert experiment.history.sizes['trial'] == n + 2", timeout=120)
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
