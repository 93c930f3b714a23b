"""Driving :class:`~daskhpo.engine.state.LoopState` by hand in tests: events in, every instruction out."""

from __future__ import annotations

from collections.abc import Iterator

from daskhpo.engine.state import LoopState, Planned, RequestSuggestions, Suggested

#: the wall-clock time at ``now == 0``: ``feed`` hands the state ``wall = WALL + now``
WALL = 1000.0


def feed(state: LoopState, event: object, now: float = 0.0) -> list:
    """The instructions that follow ``event`` at ``now``."""
    return state.handle(event, now=now, wall=WALL + now)


def answer(state: LoopState, todo: list, plans: Iterator[Planned], now: float) -> list:
    """Carry ``todo`` out, answering each request for suggestions with the next of ``plans``
    (nothing more once they run out); every instruction, in order."""
    out = []
    while todo:
        instruction = todo.pop(0)
        out.append(instruction)
        if isinstance(instruction, RequestSuggestions):
            plan = next(plans, None)
            todo = feed(state, Suggested(() if plan is None else (plan,), nothing=plan is None), now) + todo
    return out
