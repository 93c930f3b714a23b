"""The search driver as a chain of Slurm jobs (daskhpo.integrations.driver, ``daskhpo submit``).

The job script and the command line are checked without Slurm.  On the real single-node
Slurm of the tests (session fixture ``slurm``, tests/slurm_local.py) a search script
(tests/slurm_driver_search.py, unchanged) runs in driver jobs whose worker jobs take the
fake GPUs: hand-overs on the signal, and a driver killed outright.  The hand-over signal is
sent early with ``scancel --signal=USR1 --batch JOB`` (what ``--signal=B:USR1@S`` makes
Slurm send S seconds before the walltime), so the test does not wait for a walltime.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import daskhpo
from daskhpo.integrations.cli import main
from daskhpo.integrations.driver import MARGIN, DriverJob, parse_walltime
from tests import slurm_local

slurm = slurm_local.slurm
TESTS = Path(__file__).resolve().parents[1]
SEARCH = TESTS / "slurm_driver_search.py"


# -- the job script and the command line (no Slurm) -----------------------------------------------


def test_job_script_asks_for_the_signal_before_the_walltime_and_runs_the_script_unchanged(tmp_path):
    job = DriverJob(str(SEARCH), ["out dir/s.nc", "12"], walltime="1-02:00:00", grace=60, partition="small",
                    account="proj", sbatch_options=["--qos", "long", "--constraint=intel"],
                    log_directory=str(tmp_path / "logs"), workdir=str(tmp_path))
    script = job.job_script()
    directives = [line[len("#SBATCH "):] for line in script.splitlines() if line.startswith("#SBATCH ")]
    assert directives == [
        "--job-name=daskhpo-slurm_driver_search", "--time=1-02:00:00", f"--signal=B:USR1@{60 + MARGIN}",
        "--ntasks=1", "--cpus-per-task=1", "--mem=4G",
        f"--output={tmp_path}/logs/daskhpo-slurm_driver_search-%j.out",
        "--partition=small", "--account=proj", "--qos long", "--constraint=intel",
    ]
    assert script.startswith("#!/usr/bin/env bash\n")
    last = shlex.split(script.splitlines()[-1])  # exec PYTHON -m daskhpo.integrations.driver JSON, as bash reads it
    assert last[:4] == ["exec", sys.executable, "-m", "daskhpo.integrations.driver"]
    again = DriverJob.from_json(last[4])
    assert again == job and again.args == ("out dir/s.nc", "12") and again.restart == 0
    assert job.successor().restart == 1 and "job 2 of at most 11" in job.successor().job_script()


@pytest.mark.parametrize(("options", "message"), [
    ({"walltime": "2h"}, "walltime must be HH:MM:SS or D-HH:MM:SS, got '2h'"),
    ({"walltime": "00:61:00"}, "walltime must be HH:MM:SS"),
    ({"walltime": "00:05:00"}, "walltime '00:05:00' (300 s) is too short: the hand-over signal comes 300 s"),
    ({"walltime": "00:05:00", "grace": 10, "signal_before": 30}, None),
    ({"signal_before": 0}, "signal_before must be whole seconds in 1..65535, got 0"),
    ({"max_restarts": -1}, "max_restarts must be an integer >= 0, got -1"),
    ({"grace": -5}, "grace must be non-negative seconds, got -5"),
    ({"cpus": 0}, "cpus must be an integer >= 1, got 0"),
    ({"args": "--trials 4"}, "args must be a sequence of strings, got the string '--trials 4'"),
    ({"sbatch_options": ["--time=5"]}, "sbatch option '--time=5' is set by the driver job itself (set walltime="),
    ({"sbatch_options": ["-p", "gpu"]}, "sbatch option '-p' is set by the driver job itself (set partition="),
    ({"sbatch_options": ["-pgpu"]}, "sbatch option '-pgpu' is set by the driver job itself (set partition="),
    ({"sbatch_options": ["-t1:00:00"]}, "sbatch option '-t1:00:00' is set by the driver job itself (set walltime="),
    ({"sbatch_options": ["--mem-per-cpu=2G"]}, "'--mem-per-cpu=2G' is set by the driver job itself (set memory="),
    ({"sbatch_options": ["--dependency=afterok:1"]}, "the driver sets it for its successor"),
    ({"job_name": "my job"}, "job_name must be letters, digits and . _ + -, got 'my job'"),
])
def test_driver_job_names_the_bad_option(options, message, tmp_path):
    if message is None:
        assert DriverJob(str(SEARCH), workdir=str(tmp_path), **options).lead == 30
        return
    with pytest.raises(ValueError, match=re.escape(message)):
        DriverJob(str(SEARCH), workdir=str(tmp_path), **options)


def test_parse_walltime_and_a_missing_script():
    assert parse_walltime("01:00:00") == 3600 and parse_walltime("2-00:00:30") == 2 * 86400 + 30
    with pytest.raises(ValueError, match="script 'nope.py' is not a file"):
        DriverJob("nope.py")


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_cli_submit_print_shows_the_job_script_of_the_options(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli("submit", str(SEARCH), "--args=s.nc 8 --flag", "--walltime", "04:00:00", "--max-restarts",
                           "3", "--grace", "30", "--partition", "small", "--print", "--", "--qos=long", "--exclusive")
    assert code == 0
    assert out == DriverJob(str(SEARCH), ["s.nc", "8", "--flag"], walltime="04:00:00", max_restarts=3, grace=30,
                            partition="small", sbatch_options=["--qos=long", "--exclusive"]).job_script()
    assert not (tmp_path / "daskhpo-logs").exists()  # printing creates nothing
    code, _, err = run_cli("submit", str(SEARCH), "--walltime", "5:00", "--print")
    assert code == 2 and err.startswith("daskhpo submit: error: walltime must be HH:MM:SS") and "'5:00'" in err
    code, _, err = run_cli("submit", str(SEARCH), "--args=--x 'unclosed", "--print")
    assert code == 2 and "--args is not a valid shell string" in err
    code, _, err = run_cli("submit", str(SEARCH), "--print", "--", "--signal=USR2@60")
    assert code == 2 and "'--signal=USR2@60' is set by the driver job itself" in err


# -- a drain on a real Dask cluster -----------------------------------------------------------------


#: the long trials of the drain test run until the test opens this (the in-process cluster's
#: workers share this module): a drain that waited for them would wait 60 s
_LONG_TRIALS_MAY_END = threading.Event()


def short_or_long(x: float, hold: bool) -> float:
    time.sleep(0.1)
    if x >= 0 and hold:
        _LONG_TRIALS_MAY_END.wait(60)
    return x**2


def test_drain_on_dask_abandons_trials_past_the_grace_and_resume_completes(tmp_path, caplog):
    """SIGUSR1 through the installed handler, on an in-process Dask cluster: the long trials
    still running when the grace ends are cancelled and not recorded; a resume completes."""
    from distributed import Client, LocalCluster

    from daskhpo.engine import clear_drain, install_signal_handlers

    storage = tmp_path / "d.nc"
    clear_drain()
    restore = install_signal_handlers({signal.SIGUSR1: 0.5})
    signalled = []

    def signal_after_three(record) -> None:
        if len(exp.records()) == 3:
            signalled.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGUSR1)

    try:
        with LocalCluster(n_workers=4, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            exp = daskhpo.build_experiment("dask-drain", {"x": "uniform(-1, 1)"}, storage=storage, seed=1)
            exp.subscribe(signal_after_three)
            _LONG_TRIALS_MAY_END.clear()
            try:
                exp.workon(short_or_long, max_trials=12, client=client, n_workers=4, hold=True)
            finally:
                _LONG_TRIALS_MAY_END.set()  # the abandoned trials end, and free their threads
            drained_in = time.monotonic() - signalled[0]
            first = {r.trial: r for r in exp.records()}
            exp.close()
            clear_drain()
            # the successor's part, on the same cluster: every trial short now
            resumed = daskhpo.build_experiment("dask-drain", {"x": "uniform(-1, 1)"}, storage=storage)
            resumed.workon(short_or_long, max_trials=12, client=client, n_workers=4, hold=False)
    finally:
        restore()
        clear_drain()
    assert drained_in < 30  # the 0.5 s grace and the history, not the 60 s of a held trial
    assert re.search(r"drained \(SIGUSR1\) after \d+ finished trials; [1-9]\d* abandoned", caplog.text)
    assert len(first) >= 3 and {r.status for r in first.values()} == {"completed"}
    assert all(r.params["x"] < 0 for r in first.values())  # no long trial finished: they were abandoned
    assert json.loads(exp.attrs["driver_sessions"])[0]["reason"] == "drained: SIGUSR1"
    final = {r.trial: r for r in daskhpo.load_experiment(storage).records()}
    assert len(final) == 12 and {r.status for r in final.values()} == {"completed"}
    assert all(final[t].params == r.params and final[t].objective == r.objective for t, r in first.items())


# -- on a real Slurm ------------------------------------------------------------------------------


def completed(storage: Path) -> int:
    """Completed trials stored so far (snapshot and journal, read while the driver writes)."""
    if not storage.exists():
        return 0
    return daskhpo.load_experiment(storage).history.sizes.get("trial", 0)


def queue(name: str) -> dict[str, str]:
    """Job id -> state of the jobs named ``name``."""
    out = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i %T"], capture_output=True, text=True, check=True)
    return dict(line.split() for line in out.stdout.splitlines())


def wait(condition, timeout: float, what: str) -> float:
    """Seconds until ``condition()`` holds; AssertionError naming ``what`` after ``timeout``."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)
    return time.monotonic() - start


def running_driver(name: str, timeout: float = 60) -> str:
    found: list[str] = []

    def one_running() -> bool:
        found[:] = [j for j, state in queue(name).items() if state == "RUNNING"]
        return len(found) == 1

    wait(one_running, timeout, f"a running driver job {name}")
    return found[0]


@contextlib.contextmanager
def chain(tmp_path: Path, name: str, n: int, max_restarts: int, delays: str):
    """Submit the search script's first driver job; yields (storage, job id).

    On a failure the driver jobs' output is printed; whatever happens, the chain is stopped
    and the queue emptied.
    """
    storage = tmp_path / "search.nc"
    job = daskhpo.submit(SEARCH, [str(storage), str(n), delays, str(tmp_path / "logs")], walltime="00:10:00",
                         max_restarts=max_restarts, grace=10, memory="1G", job_name=name,
                         log_directory=str(tmp_path / "logs"), workdir=str(tmp_path))
    try:
        yield storage, job
    except BaseException:
        print(logs(tmp_path))
        raise
    finally:
        subprocess.run(["scancel", "-n", name], check=False, timeout=30)
        slurm_local.cancel_all_jobs()


def logs(tmp_path: Path) -> str:
    return "\n".join(f"== {p.name}\n{p.read_text()[-3000:]}" for p in sorted((tmp_path / "logs").glob("daskhpo-*")))


slurm_timeout = pytest.mark.timeout(240)


@slurm_timeout
def test_search_spans_three_driver_jobs_handing_over_on_the_signal(slurm, tmp_path):
    name, n = "daskhpo-handover", 10
    # trials of 1 s in the first two drivers, so each is signalled mid-search; 0.3 s after
    with chain(tmp_path, name, n, max_restarts=4, delays="1,1,0.3") as (storage, first):
        drivers, handovers = [], []
        for _ in range(2):  # two hand-overs, each after a few trials of the job in charge
            driver = running_driver(name)
            drivers.append(driver)
            done_before = completed(storage)
            wait(lambda b=done_before: completed(storage) >= b + 2, 90, f"2 trials in driver job {driver}")
            subprocess.run(["scancel", "--signal=USR1", "--batch", driver], check=True, timeout=30)
            signalled = time.monotonic()
            ended = wait(lambda d=driver: d not in queue(name), 60, f"driver job {driver} to hand over")
            successor = running_driver(name)
            handovers.append((ended, time.monotonic() - signalled))
            assert successor != driver
        drivers.append(running_driver(name))
        wait(lambda: not slurm_local.jobs(), 120, "the chain to end and the queue to empty")
    assert drivers[0] == first
    exp = daskhpo.load_experiment(storage)
    ds = exp.history
    # N completed trials, each exactly once, run by three driver jobs on GPU worker jobs
    assert ds.sizes["trial"] == n and set(ds["status"].values) == {"completed"}
    assert sorted(ds["trial"].values.tolist()) == list(range(n)) and len(set(ds["x"].values.tolist())) == n
    assert {str(int(j)) for j in ds["driver_job"].values} == set(drivers)
    assert set(ds["gpu"].values) <= {"0", "1"} and set(ds["attempts"].values.tolist()) == {1}
    sessions = json.loads(exp.attrs["driver_sessions"])
    assert [s["job"] for s in sessions] == drivers and [s["restart"] for s in sessions] == [0, 1, 2]
    assert [s["reason"] for s in sessions] == ["drained: SIGUSR1", "drained: SIGUSR1", "completed"]
    code, out, _ = run_cli("status", str(storage))
    assert code == 0 and "driver sessions: 3, hand-overs: 2, died: 0" in out
    assert f"last: job {drivers[2]} on" in out and out.rstrip().endswith(": completed")
    print(f"\nhand-overs: signal -> driver job gone {', '.join(f'{e:.1f}' for e, _ in handovers)} s; "
          f"-> successor running {', '.join(f'{s:.1f}' for _, s in handovers)} s")


@slurm_timeout
def test_killed_driver_is_resumed_by_its_successor_and_leaves_no_job(slurm, tmp_path):
    name, n = "daskhpo-killed", 7
    # trials of 1.5 s in the first driver, so it is killed mid-search; 0.3 s in its successor
    with chain(tmp_path, name, n, max_restarts=2, delays="1.5,0.3") as (storage, first):
        assert running_driver(name) == first
        wait(lambda: completed(storage) >= 3, 90, "3 trials before the kill")
        before = {r.trial: r for r in daskhpo.load_experiment(storage).records()}
        workers = [j for j in slurm_local.jobs() if j not in queue(name)]
        assert len(workers) == 1  # the driver's GPU worker job
        # SIGKILL to the driver process itself (the batch step): no handler, no clean-up
        subprocess.run(["scancel", "--signal=KILL", "--batch", first], check=True, timeout=30)
        killed = time.monotonic()
        orphan = wait(lambda: workers[0] not in slurm_local.jobs(), 60, f"worker job {workers[0]} to end")
        successor = running_driver(name)
        wait(lambda: not slurm_local.jobs(), 120, "the successor to finish and the queue to empty")
        print(f"\nkilled driver: its worker job left the queue {orphan:.1f} s after the kill, "
              f"the search ended {time.monotonic() - killed:.1f} s after it")
    exp = daskhpo.load_experiment(storage)
    ds = exp.history
    assert ds.sizes["trial"] == n and set(ds["status"].values) == {"completed"}
    after = {r.trial: r for r in exp.records()}
    for trial, record in before.items():  # nothing completed is lost or changed
        assert after[trial].params == record.params and after[trial].objective == record.objective
    assert {str(int(j)) for j in ds["driver_job"].values} == {first, successor}
    sessions = json.loads(exp.attrs["driver_sessions"])
    # the successor took the storage lock of a process killed while holding it
    assert [(s["job"], s["reason"]) for s in sessions] == [(first, "died"), (successor, "completed")]
    assert sessions[0]["end"] is None


@slurm_timeout
def test_a_failing_script_ends_the_chain_unless_the_cluster_failed(slurm, tmp_path):
    """A script error would fail again: its successor is cancelled.  A cluster error
    (NoWorkersError: worker jobs stuck in the queue) may not: the successor tries again."""
    (tmp_path / "bug.py").write_text("raise ValueError('a bug in the script')\n")
    (tmp_path / "stuck.py").write_text("import daskhpo\nraise daskhpo.NoWorkersError('no worker within 60 s')\n")
    options = dict(walltime="00:10:00", max_restarts=1, memory="500M", log_directory=str(tmp_path / "logs"),
                   workdir=str(tmp_path))
    try:
        bug = daskhpo.submit(tmp_path / "bug.py", job_name="daskhpo-bug", **options)
        stuck = daskhpo.submit(tmp_path / "stuck.py", job_name="daskhpo-stuck", **options)
        wait(lambda: not slurm_local.jobs(), 60, "both chains to end")
    finally:
        subprocess.run(["scancel", "-n", "daskhpo-bug,daskhpo-stuck"], check=False, timeout=30)
        slurm_local.cancel_all_jobs()
    out = {p.name: p.read_text() for p in (tmp_path / "logs").iterdir()}
    assert "ValueError: a bug in the script" in out[f"daskhpo-bug-{bug}.out"]
    assert "the script failed (ValueError): successor job" in out[f"daskhpo-bug-{bug}.out"]
    assert len([n for n in out if n.startswith("daskhpo-bug-")]) == 1  # its successor never ran
    assert "the cluster failed (NoWorkersError): successor job" in out[f"daskhpo-stuck-{stuck}.out"]
    second = [n for n in out if n.startswith("daskhpo-stuck-") and n != f"daskhpo-stuck-{stuck}.out"]
    assert len(second) == 1 and "restart 1 = max_restarts: no successor" in out[second[0]]


@pytest.mark.parametrize("field", ["partition", "account", "memory", "log_directory", "walltime", "job_name",
                                   "sbatch_options", "workdir"])
@pytest.mark.parametrize("breaker", ["\n", "\r", "\x00", "\u2028"])
def test_no_value_adds_a_line_to_the_job_script(field, breaker, tmp_path):
    value = f"small{breaker}#SBATCH --qos=top"
    options = {field: [f"--comment=x{breaker}#SBATCH --qos=top"] if field == "sbatch_options" else value}
    if field == "walltime":
        options[field] = f"02:00:00{breaker}#SBATCH --qos=top"
    options.setdefault("workdir", str(tmp_path))
    with pytest.raises(ValueError, match=f"^{field} must not contain"):
        job = DriverJob(str(SEARCH), **options)
        # what the old code wrote: the injected directive on a line of its own
        assert "\n#SBATCH --qos=top" not in job.job_script()
    assert DriverJob(str(SEARCH), partition="gpu-small", account="proj_42", memory="8G",
                     workdir=str(tmp_path)).job_script().count("\n#SBATCH") == 9
