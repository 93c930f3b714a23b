"""Behaviour of the multivariate TPE beyond the conformance suite."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _problems import (
    BRANIN_MIN,
    BRANIN_SPACE,
    ask_batch,
    best_regret,
    branin,
    min_pairwise_distance,
    tell_random,
)

from daskhpo.optimizers import Trial, make_optimizer
from daskhpo.optimizers.tpe import TPE, _log_mass
from daskhpo.space import Space


def test_beats_random_search_on_branin():
    seeds = range(5)
    tpe = [best_regret("tpe", BRANIN_SPACE, branin, 60, s, BRANIN_MIN) for s in seeds]
    rnd = [best_regret("random", BRANIN_SPACE, branin, 60, s, BRANIN_MIN) for s in seeds]
    assert np.median(tpe) < np.median(rnd) / 5


def test_pending_trials_spread_parallel_suggestions():
    """Eight asks with none told back: the constant liar keeps them apart."""
    spreads = {}
    for liar in (True, False):
        opt = make_optimizer(("tpe", {"constant_liar": liar}), BRANIN_SPACE, 4)
        tell_random(opt, BRANIN_SPACE, branin, 30)
        spreads[liar] = min_pairwise_distance(BRANIN_SPACE, ask_batch(opt, 8, 30))
    assert spreads[True] > 0.02
    assert spreads[True] > 2 * spreads[False]


def test_pending_trial_leaves_the_model_when_told():
    opt = TPE(BRANIN_SPACE, seed=0)
    tell_random(opt, BRANIN_SPACE, branin, 15)
    params = opt.ask(15).params
    assert 15 in opt._pending
    opt.tell(Trial(15, params, "broken"))
    assert not opt._pending


def test_learns_the_best_category_and_integer():
    space = Space({"kind": "choices(['bad', 'good', 'worse'])", "n": "randint(1, 20)", "x": "uniform(0, 1)"})

    def fn(p):
        return {"bad": 1.0, "good": 0.0, "worse": 2.0}[p["kind"]] + abs(p["n"] - 13) / 10 + (p["x"] - 0.3) ** 2

    opt = make_optimizer("tpe", space, 1)
    late = []
    for trial_id in range(60):
        params = opt.ask(trial_id).params
        assert isinstance(params["n"], int) and 1 <= params["n"] <= 20
        opt.tell(Trial(trial_id, params, "completed", fn(params)))
        if trial_id >= 40:
            late.append(params)
    assert sum(p["kind"] == "good" for p in late) >= 14
    assert np.median([abs(p["n"] - 13) for p in late]) <= 2


def test_log_scale_dimension_is_searched_in_log_space():
    space = Space({"lr": "loguniform(1e-6, 1)"})
    opt = make_optimizer("tpe", space, 2)
    for trial_id in range(40):
        params = opt.ask(trial_id).params
        opt.tell(Trial(trial_id, params, "completed", (math.log10(params["lr"]) + 5) ** 2))
    best = opt.ask(40).params["lr"]
    assert 1e-6 <= best <= 1e-4


def test_log_mass_is_accurate_in_the_tails():
    lo, hi = np.array([-1.0, 8.0, -40.0]), np.array([1.0, 9.0, -39.0])
    from scipy import stats

    expected = np.log(stats.norm.cdf(hi[:1]) - stats.norm.cdf(lo[:1]))
    assert np.allclose(_log_mass(lo, hi)[:1], expected)
    assert np.all(np.isfinite(_log_mass(lo, hi)))
    assert np.isclose(_log_mass(lo, hi)[1], stats.norm.logsf(8.0) + np.log1p(-np.exp(stats.norm.logsf(9.0) - stats.norm.logsf(8.0))))


@pytest.mark.parametrize(
    "option, value",
    [("gamma", 0.0), ("gamma", 1.5), ("n_candidates", 0), ("n_initial", 0), ("bandwidth", -1.0), ("constant_liar", "yes")],
)
def test_bad_options_name_the_option(option, value):
    with pytest.raises(ValueError, match=option):
        make_optimizer(("tpe", {option: value}), BRANIN_SPACE, 0)
