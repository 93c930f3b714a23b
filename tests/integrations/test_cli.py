"""The ``daskhpo`` command line (its browser test is in tests/viz/test_dashboard.py)."""

from __future__ import annotations

import pytest

from daskhpo.integrations.cli import main


def test_dashboard_of_a_missing_file_fails_with_a_message(tmp_path, capsys):
    assert main(["dashboard", str(tmp_path / "missing.nc")]) == 2
    assert "no experiment stored at" in capsys.readouterr().err


def test_usage_errors_exit_with_status_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["dashboard", "x.nc", "--port", "many"])
    assert exc.value.code == 2
    assert "invalid int value" in capsys.readouterr().err


def test_output_into_a_closed_pipe_ends_quietly(tmp_path):
    """`daskhpo status x.nc | head`: the reader goes away; no BrokenPipeError traceback."""
    import os
    import subprocess
    import sys

    from tests.helpers_plot import make_experiment

    path = tmp_path / "x.nc"
    make_experiment(30, path=str(path)).close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    for argv in (["status", str(path)], ["list", str(tmp_path)]):
        proc = subprocess.Popen([sys.executable, "-m", "daskhpo", *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        proc.stdout.close()  # as `head` does after its lines: every write now fails with EPIPE
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 141, err
        assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err, err


def test_hunt_max_broken_takes_auto_none_or_a_count(monkeypatch, capsys):
    import daskhpo.integrations.cli as cli

    seen = []
    monkeypatch.setattr(cli, "_hunt", lambda args, command: seen.append(args.max_broken) or 0)
    base = ["hunt", "-n", "x", "--storage", "x.nc", "--max-trials", "1"]
    for extra, expected in [([], "auto"), (["--max-broken", "none"], None), (["--max-broken", "7"], 7),
                            (["--max-broken", "AUTO"], "auto")]:
        assert main([*base, *extra, "--", "prog"]) == 0
        assert seen[-1] == expected
    with pytest.raises(SystemExit) as exc:
        main([*base, "--max-broken", "-1", "--", "prog"])
    assert exc.value.code == 2 and "auto, none or a non-negative integer" in capsys.readouterr().err
