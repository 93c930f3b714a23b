"""``daskhpo hunt`` and :mod:`daskhpo.integrations.hunt`: any program as a trial."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import daskhpo
from daskhpo.integrations.cli import main
from daskhpo.integrations.hunt import Command, CommandFailed, parse_command

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}

SHELL_OBJECTIVE = """\
#!/bin/sh
# obj.sh --x X --layers N: (x - 1)^2 + layers, printed as the last line
echo "$@" > args.txt
echo "x is $2" >&2
python3 -c "import sys; print('objective:', (float(sys.argv[1]) - 1) ** 2 + int(sys.argv[2]))" "$2" "$4"
"""


def _script(path, text, mode=0o755):
    path.write_text(textwrap.dedent(text))
    path.chmod(mode)
    return str(path)


def _cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "daskhpo.integrations.cli", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=240
    )


def test_parse_command_and_argv():
    space, template = parse_command(["prog", "--epochs", "3", "--lr~loguniform(1e-5, 1)", "--batch-size~randint(8, 64)"])
    assert space == {"lr": "loguniform(1e-5, 1)", "batch_size": "randint(8, 64)"}
    command = Command(template, "/tmp/x")
    assert command.argv_for({"lr": 0.1, "batch_size": np.int64(16)}) == [
        "prog", "--epochs", "3", "--lr", "0.1", "--batch-size", "16"]
    with pytest.raises(ValueError, match="no command"):
        parse_command([])
    with pytest.raises(ValueError, match="twice"):
        parse_command(["prog", "--a~uniform(0, 1)", "--a~uniform(0, 2)"])


def test_shell_script_objective_with_resume_status_list_and_plot(tmp_path, capsys, monkeypatch):
    _script(tmp_path / "obj.sh", SHELL_OBJECTIVE)
    storage = tmp_path / "sh.nc"
    hunt = ["hunt", "-n", "shell", "--storage", str(storage), "--workers", "2", "--no-progress",
            "--", "./obj.sh", "--x~uniform(-2, 2)", "--layers~randint(1, 3)"]
    # a real process, as users run it
    done = _cli(*hunt[:5], "--max-trials", "4", *hunt[5:], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "completed: 4" in done.stdout and "Traceback" not in done.stderr
    ds = daskhpo.load_experiment(storage).history
    assert list(ds["status"].values) == ["completed"] * 4
    np.testing.assert_allclose(ds["objective"].values, (ds["x"].values - 1) ** 2 + ds["layers"].values)
    for trial in range(4):
        workdir = tmp_path / "sh.nc.trials" / str(trial)
        args = (workdir / "args.txt").read_text().split()
        assert args[0] == "--x" and float(args[1]) == ds["x"].values[trial]
        assert args[2:] == ["--layers", str(ds["layers"].values[trial])]
        assert "x is" in (workdir / "stderr.txt").read_text()
    # the same command again, with a larger budget, resumes (in-process for speed)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    progress = [a if a != "--no-progress" else "--progress" for a in hunt]
    assert main([*progress[:5], "--max-trials", "6", *progress[5:]]) == 0
    assert "6/6" in capsys.readouterr().err  # the progress bar, resumed at 4/6
    resumed = daskhpo.load_experiment(storage).history
    assert list(resumed["trial"].values) == list(range(6))
    np.testing.assert_array_equal(resumed["x"].values[:4], ds["x"].values)
    capsys.readouterr()

    assert main(["status", str(storage)]) == 0
    out = capsys.readouterr().out
    assert "completed: 6" in out and "best: trial" in out and "last 5 trials" in out
    assert main(["list", str(tmp_path)]) == 0
    assert "sh.nc  name='shell'  trials=6  completed=6" in capsys.readouterr().out
    assert main(["plot", "parallel-coordinates", str(storage), "-o", str(tmp_path / "pc.html")]) == 0
    assert "bokeh" in (tmp_path / "pc.html").read_text().lower()


def test_python_script_objectives_failing_and_timed_out(tmp_path, client, monkeypatch):
    ok = _script(tmp_path / "ok.py", """\
        import sys
        from daskhpo.integrations.client import report_results
        x = float(sys.argv[sys.argv.index("--x") + 1])
        report_results([{"name": "objective", "type": "objective", "value": x ** 2},
                        {"name": "abs", "type": "statistic", "value": abs(x)}])
        """)
    fail = _script(tmp_path / "fail.py", """\
        import sys
        print("loading data", file=sys.stderr)
        sys.exit("CUDA error: out of memory")
        """)
    slow = _script(tmp_path / "slow.py", "import time; print('started', flush=True); time.sleep(60)\n")
    silent = _script(tmp_path / "silent.py", "print('no result here')\n")
    space = {"x": "uniform(-1, 1)"}
    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])  # for the scripts run by the in-process workers

    experiment = daskhpo.build_experiment("py", space, seed=1)
    _, template = parse_command([sys.executable, ok, "--x~uniform(-1, 1)"])
    experiment.workon(Command(template, tmp_path / "ok"), max_trials=2, client=client, progress=False)
    ds = experiment.history
    np.testing.assert_allclose(ds["objective"].values, ds["x"].values ** 2)
    np.testing.assert_allclose(ds["abs"].values, np.abs(ds["x"].values))

    for script, timeout, expected in [
        (fail, None, ["exited with status 1", "loading data", "CUDA error: out of memory"]),
        (slow, 1.0, ["time-out of 1 s"]),
        (silent, None, ["gave no result", "no result here"]),
    ]:
        experiment = daskhpo.build_experiment("bad", space, seed=1)
        _, template = parse_command([sys.executable, script, "--x~uniform(-1, 1)"])
        with pytest.raises(daskhpo.TooManyBrokenTrials):
            experiment.workon(Command(template, tmp_path / "bad", timeout=timeout), max_trials=2,
                              client=client, max_broken=0, progress=False)
        error = str(experiment.history["error"].values[0])
        assert experiment.history["status"].values[0] == "broken"
        for text in expected:
            assert text in error, error


def test_asha_prunes_an_external_program(tmp_path, monkeypatch):
    _script(tmp_path / "train.py", """\
        import sys, time
        from daskhpo.integrations.client import report_intermediate, report_results
        lr = float(sys.argv[sys.argv.index("--lr") + 1])
        for epoch in range(1, 10):
            loss = (lr - 0.3) ** 2 + 1.0 / epoch
            report_intermediate(step=epoch, objective=loss)
            time.sleep(0.15)
        open("finished", "w").close()
        report_results(loss)
        """)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])
    storage = tmp_path / "asha.nc"
    config = json.dumps({"asha": {"min_resource": 1, "max_resource": 9, "reduction_factor": 3}})
    assert main(["hunt", "-n", "asha", "--storage", str(storage), "--max-trials", "4", "--workers", "2",
                 "--algorithm-config", config, "--no-progress", "--", sys.executable, "train.py",
                 "--lr~uniform(0, 1)"]) == 0
    ds = daskhpo.load_experiment(storage).history
    pruned = [int(t) for t in ds["trial"].values[ds["status"].values == "pruned"]]
    assert pruned, ds["status"].values
    for trial in pruned:
        assert ds["last_step"].sel(trial=trial) < 9
        assert not (tmp_path / "asha.nc.trials" / str(trial) / "finished").exists()  # terminated
    assert np.isfinite(ds["reported_objective"].sel(trial=pruned[0], step=1))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["hunt", "-n", "x", "--storage", "{tmp}/a.nc", "--max-trials", "2", "--", "prog", "--x~uniform(0,"], "malformed prior"),
        (["hunt", "-n", "x", "--storage", "{tmp}/a.nc", "--max-trials", "2", "--"], "no command given"),
        (["hunt", "-n", "x", "--storage", "{tmp}/a.nc", "--max-trials", "2"], "no command given"),
        (["hunt", "-n", "x", "--storage", "{tmp}/a.nc", "--max-trials", "2", "--algorithm", "nope", "--", "true", "--x~uniform(0, 1)"], "unknown algorithm"),
        (["hunt", "-n", "x", "--storage", "{tmp}/a.nc", "--max-trials", "2", "--", "p", "--a", "1"], "no parameter"),
        (["hunt", "-n", "x", "--storage", "{tmp}/no/a.nc", "--max-trials", "2", "--", "p", "--x~uniform(0, 1)"], "does not exist"),
        (["hunt", "-n", "x", "--storage", "{tmp}/a.nc", "--algorithm-config", "{{", "--max-trials", "2", "--", "true", "--x~uniform(0, 1)"], "not JSON"),
        # a typo in the program or its script: before any trial, no storage written
        (["hunt", "-n", "x", "--storage", "{tmp}/a.nc", "--max-trials", "2", "--", "python", "trian.py", "--x~uniform(0, 1)"],
         "python: script 'trian.py' does not exist"),
        (["hunt", "-n", "x", "--storage", "{tmp}/a.nc", "--max-trials", "2", "--", "./trian.sh", "--x~uniform(0, 1)"],
         "program './trian.sh' does not exist"),
        (["hunt", "-n", "x", "--storage", "{tmp}/a.nc", "--max-trials", "2", "--", "pythn", "t.py", "--x~uniform(0, 1)"],
         "program 'pythn' is not found on PATH"),
        (["status", "{tmp}/missing.nc"], "no experiment stored at"),
        (["plot", "regret", "{tmp}/missing.nc"], "no experiment stored at"),
        (["plot", "nope", "{tmp}/missing.nc"], "unknown plot"),
        (["list", "{tmp}/nodir"], "not a directory"),
        (["hunt", "-n", "x", "--storage", "{tmp}/a.nc", "--", "p", "--x~uniform(0, 1)"], "--max-trials"),
    ],
)
def test_bad_input_is_one_line_and_status_2(tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "a.nc").exists() and not (tmp_path / "a.nc.trials").exists()  # no trial ran


def test_check_command_finds_the_script_an_interpreter_runs(tmp_path):
    from daskhpo.integrations.hunt import check_command

    (tmp_path / "train.py").write_text("")
    for ok in (["python", "-u", "train.py"], ["python", "-X", "dev", "train.py"], ["python", "-m", "mod"],
               ["python", "-c", "print(1)"], ["sh", "-c", "echo 1"], ["python", _param()], ["echo", "train.pyy"]):
        check_command(ok, cwd=tmp_path)
    with pytest.raises(FileNotFoundError, match="script 'trian.py' does not exist"):
        check_command(["python3", "-u", "trian.py", _param()], cwd=tmp_path)
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    with pytest.raises(PermissionError, match="not executable"):
        check_command(["./run.sh"], cwd=tmp_path)


def _param():
    from daskhpo.integrations.hunt import _Param

    return _Param("--x", "x")


def test_direct_call_and_objective_line(tmp_path):
    _script(tmp_path / "p.sh", "#!/bin/sh\necho \"report: {\\\"step\\\": 1, \\\"objective\\\": 2}\"\necho objective: $2\n")
    _, template = parse_command([str(tmp_path / "p.sh"), "--x~uniform(0, 1)"])
    with pytest.warns(RuntimeWarning, match="outside a daskhpo trial"):
        assert Command(template, tmp_path / "runs")(x=0.25) == 0.25
    with pytest.raises(CommandFailed, match="cannot run"):
        Command(["/no/such/program"], tmp_path / "runs")()


def test_terminate_all_stops_running_programs(tmp_path):
    import threading
    import time

    from daskhpo.integrations import hunt as external

    _, template = parse_command([sys.executable, "-c", "import time; time.sleep(60)", "--x~uniform(0, 1)"])
    errors = []
    thread = threading.Thread(target=lambda: errors.append(pytest.raises(CommandFailed, Command(template, tmp_path), x=0.5)))
    thread.start()
    for _ in range(100):
        if external._LIVE:
            break
        time.sleep(0.05)
    assert external.terminate_all() == 1
    thread.join(10)
    assert not thread.is_alive() and not external._LIVE
    assert "killed by signal" in str(errors[0].value)


def test_hunt_on_a_running_scheduler_with_worker_processes(tmp_path, process_client, monkeypatch, capsys):
    _script(tmp_path / "obj.sh", SHELL_OBJECTIVE)
    monkeypatch.chdir(tmp_path)
    storage = tmp_path / "remote.nc"
    assert main(["hunt", "-n", "remote", "--storage", str(storage), "--max-trials", "3", "--no-progress",
                 "--scheduler", process_client.scheduler.address, "--algorithm", "tpe",
                 "--", "./obj.sh", "--x~uniform(-2, 2)", "--layers~randint(1, 3)"]) == 0
    ds = daskhpo.load_experiment(storage).history
    assert list(ds["status"].values) == ["completed"] * 3
    workers = set(process_client.scheduler_info()["workers"])
    assert set(ds["worker"].values) <= workers
    assert ds.attrs["algorithm"] == "tpe"


def test_each_program_sees_its_trials_own_gpus(tmp_path, monkeypatch):
    """Per-configuration GPU counts: the program's CUDA_VISIBLE_DEVICES is the trial's devices, not the worker's."""
    from distributed import Client, LocalCluster

    seen = _script(tmp_path / "seen.py", """\
        import os
        from daskhpo.integrations.client import report_results
        devices = os.environ["CUDA_VISIBLE_DEVICES"].split(",")
        report_results([{"name": "objective", "type": "objective", "value": len(devices)},
                        {"name": "first", "type": "statistic", "value": int(devices[0])}])
        """)
    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")  # the "job's" GPUs, seen by the in-process worker
    _, template = parse_command([sys.executable, seen, "--x~uniform(-1, 1)"])
    experiment = daskhpo.build_experiment("gpus", {"x": "uniform(-1, 1)"}, seed=2)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, resources={"GPU": 2},
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster, set_as_default=False) as client:
        experiment.workon(Command(template, tmp_path / "runs"), max_trials=4, client=client, progress=False,
                          resources=lambda p: {"GPU": 2 if p["x"] > 0 else 1})
    ds = experiment.history
    assert set(ds["status"].values) == {"completed"}
    for x, count, first, gpu in zip(ds["x"].values, ds["objective"].values, ds["first"].values, ds["gpu"].values):
        assert count == (2 if x > 0 else 1) and gpu.split(",")[0] == str(int(first))
        assert gpu == "4,6" if x > 0 else gpu in ("4", "6")
    assert set(ds["objective"].values) == {1.0, 2.0}


def test_hunt_s_own_cluster_listens_on_loopback_only(tmp_path):
    """The cluster hunt starts serves nothing beyond this machine (dashboard_address=None
    still served 0.0.0.0:8787, and warned on stderr when that port was taken)."""
    _script(tmp_path / "listening.py", """\
        import os, sys, psutil
        # the trial runs as a child of the hunt process: count what that process listens on
        hunt = psutil.Process(os.getppid())
        listening = [c.laddr.ip for c in hunt.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        print("listening", listening, file=sys.stderr)
        print("objective:", sum(ip not in ("127.0.0.1", "::1") for ip in listening))
        """)
    done = _cli("hunt", "-n", "net", "--storage", "net.nc", "--max-trials", "2", "--workers", "1", "--no-progress",
                "--", sys.executable, "listening.py", "--x~uniform(0, 1)", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Port 8787" not in done.stderr
    records = daskhpo.load_experiment(tmp_path / "net.nc").records()
    assert [r.status for r in records] == ["completed", "completed"]
    assert [r.objective for r in records] == [0.0, 0.0]
