"""The ``daskhpo`` command line (its browser test is in tests/test_dashboard.py)."""

from __future__ import annotations

import pytest

from daskhpo.cli import main


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
