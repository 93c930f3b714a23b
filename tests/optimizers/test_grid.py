"""Grid search beyond the conformance suite."""

from __future__ import annotations

import pytest

from daskhpo.optimizers import Trial, make_optimizer
from daskhpo.space import Space

SPACE = Space({"x": "uniform(0, 1, default_value=0.25)", "k": "choices(['a', 'b'], default_value='b')"})


def test_visits_every_point_once():
    opt = make_optimizer(("grid", {"n_values": 3}), SPACE, 0)
    points = []
    for trial_id in range(10):
        s = opt.ask(trial_id)
        if s is None:
            break
        points.append(s.params)
        opt.tell(Trial(trial_id, s.params, "completed", 0.0))
    assert len(points) == 6 and len({tuple(p.values()) for p in points}) == 6
    assert opt.pending == ()


def test_a_point_replaced_by_the_defaults_is_offered_again():
    """Trial 0 asked for the first grid point but ran the defaults: the point is not lost."""
    opt = make_optimizer(("grid", {"n_values": 3}), SPACE, 0)
    first = opt.ask(0).params
    second = opt.ask(1).params
    opt.tell(Trial(0, SPACE.defaults(), "completed", 0.0))
    assert opt.ask(2).params == first
    opt.tell(Trial(1, second, "broken"))
    opt.tell(Trial(2, first, "completed", 0.0))
    rest = []
    while (s := opt.ask(3 + len(rest))) is not None:
        rest.append(s.params)
        opt.tell(Trial(2 + len(rest), s.params, "completed", 0.0))
    assert len(rest) == 4 and first not in rest and second not in rest
    assert opt.pending == ()


@pytest.mark.parametrize("n_values, problem", [(0, "'n_values': must be an integer >= 1"), ({"y": 2}, "'n_values': unknown parameter"), ({"x": 0}, "'n_values\\[x\\]'")])
def test_bad_options_name_the_algorithm_and_option(n_values, problem):
    with pytest.raises(ValueError, match=f"grid option {problem}"):
        make_optimizer(("grid", {"n_values": n_values}), SPACE, 0)
