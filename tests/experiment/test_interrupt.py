"""Ctrl-C in a run, in-process on the fake executor: a drain, the history saved, one message.

The real thing (a script, its worker processes, ``SIGINT`` from a terminal) is
``tests/integrations/test_ctrl_c.py``; these pin the rules of
:mod:`daskhpo.experiment.interrupt` in milliseconds.
"""

from __future__ import annotations

import signal

import pytest

import daskhpo
from daskhpo.engine import FakeExecutor
from daskhpo.store.sessions import sessions

SPACE = {"x": "uniform(0, 1)"}


@pytest.fixture(autouse=True)
def _python_s_own_ctrl_c():
    """Each test starts with Python's own SIGINT handler, as a script does (an earlier test
    of the session may have imported dask_jobqueue, whose import installs its own)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def square(x):
    return x * x


def _press_ctrl_c_at(n: int, times: int = 1):
    def callback(record: dict) -> None:
        if record["trial"] == n:
            for _ in range(times):
                signal.raise_signal(signal.SIGINT)

    return callback


def test_first_ctrl_c_drains_saves_and_raises_one_line(tmp_path):
    path = tmp_path / "x.nc"
    exp = daskhpo.build_experiment("i", SPACE, storage=path, seed=0)
    with pytest.raises(KeyboardInterrupt) as caught:
        exp.run(FakeExecutor(square, slots=2), max_trials=50, callbacks=[_press_ctrl_c_at(4)])
    finished = exp.history.sizes["trial"]
    assert 5 <= finished < 50  # it stopped soon after the Ctrl-C, keeping what finished
    message = str(caught.value)
    assert message.startswith(f"search interrupted: {finished} finished trials stored in {path}")
    assert "the same search run again continues from there" in message
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Python's own again
    stored = daskhpo.load_experiment(path)
    assert stored.history.sizes["trial"] == finished
    assert sessions(stored.history.attrs)[-1]["reason"] == "interrupted"
    exp.close()
    # resuming goes on from there
    again = daskhpo.build_experiment("i", storage=path)
    again.run(FakeExecutor(square, slots=2), max_trials=finished + 3)
    assert again.history.sizes["trial"] == finished + 3


def test_in_memory_message_says_where_the_history_is():
    exp = daskhpo.build_experiment("m", SPACE, seed=0)
    with pytest.raises(KeyboardInterrupt, match=r"kept in memory \(experiment.history\)"):
        exp.run(FakeExecutor(square, slots=1), max_trials=50, callbacks=[_press_ctrl_c_at(2)])
    exp.run(FakeExecutor(square, slots=1), max_trials=exp.history.sizes["trial"] + 2)  # and it goes on


def test_second_ctrl_c_interrupts_at_once_with_the_full_traceback():
    exp = daskhpo.build_experiment("twice", SPACE, seed=0)
    with pytest.raises(KeyboardInterrupt) as caught:
        exp.run(FakeExecutor(square, slots=1), max_trials=50, callbacks=[_press_ctrl_c_at(2, times=2)])
    assert str(caught.value) == ""  # Python's own, raised where the second one landed
    assert caught.traceback[-1].name == "callback"  # where it landed, not re-raised by the library
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_handler_of_the_program_is_left_alone():
    seen = []
    previous = signal.signal(signal.SIGINT, lambda *_: seen.append(1))
    try:
        exp = daskhpo.build_experiment("own", SPACE, seed=0)
        exp.run(FakeExecutor(square, slots=1), max_trials=6, callbacks=[_press_ctrl_c_at(2)])
        assert seen == [1] and exp.history.sizes["trial"] == 6  # the program decides; the run goes on
    finally:
        signal.signal(signal.SIGINT, previous)
