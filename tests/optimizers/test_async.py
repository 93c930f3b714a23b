"""Pending trials (asked, not told) in ``gp`` and ``tpe``: issue 20's asynchrony changes.

* ``gp``: with ``pooled_batch``, a batch's picks come from one candidate pool, each
  conditioned on the earlier ones by rank-one updates (``_gp_batch.pick_batch``), which must
  pick what conditioning a fresh posterior on the same fantasies picks; with ``refine_pending`` trials pending or
  more, a suggestion is not refined by L-BFGS-B (the model keeps up with 64 slots).
* ``tpe``: the pending trials' kernels are as narrow as the good group's (``liar_kernel``).
* both: with many trials in flight, no suggestion repeats a pending one, and the
  suggestions are a function of the seed.
"""

from __future__ import annotations

import numpy as np
import pytest
from _problems import BRANIN_SPACE, ask_batch, branin, min_pairwise_distance, tell_random

from daskhpo.optimizers import make_optimizer
from daskhpo.optimizers._gp_batch import pick_batch
from daskhpo.optimizers.gp import GP, _log_ei, _Posterior, log_h

FAST_GP = {"n_initial": 8, "n_candidates": 300}


def test_pooled_picks_match_conditioning_a_fresh_posterior_on_each_fantasy():
    """Rank-one updates give the same picks as refitting the posterior after each pick."""
    rng = np.random.default_rng(0)
    x = rng.random((30, 2))
    y = np.sin(6 * x[:, 0]) + np.cos(4 * x[:, 1])
    y = (y - y.mean()) / y.std()
    points = rng.random((400, 2))
    amplitude, length, noise = 1.0, np.array([0.3, 0.3]), 1e-4
    for lie in (None, 1.5):  # the believer's mean, and a constant liar
        post = _Posterior(x, y, amplitude, length, noise)
        best = float(y.min())
        picks = pick_batch(post, points, np.ones(len(points), dtype=bool), best, lie, 6, log_h)
        # brute force: a new posterior with the picks so far as fantasies, then argmax log EI
        fx, fy, expected, b = x, y, [], best
        for _ in range(6):
            fresh = _Posterior(fx, fy, amplitude, length, noise)
            value = _log_ei(fresh, points, b)[0]
            value[expected] = -np.inf
            i = int(np.argmax(value))
            expected.append(i)
            told = fresh.predict(points[i : i + 1])[0][0] if lie is None else lie
            if lie is None:
                b = min(b, float(told))
            fx, fy = np.vstack([fx, points[i]]), np.append(fy, told)
        assert picks == expected
        assert len(set(picks)) == 6


@pytest.mark.slow  # model fits: seconds of CPU, kept out of the fast lane
@pytest.mark.parametrize("pooled", [False, True])
def test_gp_batch_of_many_is_spread_out_and_a_function_of_the_seed(pooled):
    batches = []
    for _ in range(2):
        opt = make_optimizer(("gp", {**FAST_GP, "pooled_batch": pooled}), BRANIN_SPACE, 3)
        tell_random(opt, BRANIN_SPACE, branin, 20)
        suggestions = opt.ask_batch(list(range(20, 52)))
        batches.append([s.params for s in suggestions])
        assert len(opt.pending) == 32
    assert batches[0] == batches[1]
    assert min_pairwise_distance(BRANIN_SPACE, batches[0]) > 1e-3  # 32 distinct points, none a repeat


class _CountingGP(GP):
    """Counts the L-BFGS-B refinements (the real GP otherwise)."""

    refined = 0

    def _maximize(self, *args):
        self.refined += 1
        return super()._maximize(*args)


@pytest.mark.slow  # model fits: seconds of CPU, kept out of the fast lane
def test_gp_refines_only_below_refine_pending_and_stays_apart():
    opt = _CountingGP(BRANIN_SPACE, seed=1, refine_pending=4, **FAST_GP)
    tell_random(opt, BRANIN_SPACE, branin, 20)
    configs = ask_batch(opt, 12, 20)  # asked one at a time, none told: 0, 1, ..., 11 pending
    assert opt.refined == 4  # the asks made with 0-3 pending; not the 8 with 4 or more
    assert min_pairwise_distance(BRANIN_SPACE, configs) > 1e-3
    again = _CountingGP(BRANIN_SPACE, seed=1, refine_pending=4, **FAST_GP)
    tell_random(again, BRANIN_SPACE, branin, 20)
    assert ask_batch(again, 12, 20) == configs


def test_tpe_liar_kernels_are_the_good_groups_by_default():
    """The narrow liars change the parallel suggestions (the wide ones of the bad group did
    otherwise); none repeats a pending point, and they are a function of the seed."""
    runs = {}
    for name, options in (("good", {}), ("good again", {}), ("bad", {"liar_kernel": "bad", "liar_weight": 0.25})):
        opt = make_optimizer(("tpe", options), BRANIN_SPACE, 5)
        tell_random(opt, BRANIN_SPACE, branin, 40)
        runs[name] = ask_batch(opt, 16, 40)
        assert len(opt.pending) == 16
    assert runs["good"] == runs["good again"]
    assert runs["good"] != runs["bad"]
    assert runs["good"][0] == runs["bad"][0]  # nothing pending yet: the same first suggestion
    assert min_pairwise_distance(BRANIN_SPACE, runs["good"]) > 1e-4


def test_tpe_bad_liar_kernel_option_is_checked():
    with pytest.raises(ValueError, match="liar_kernel"):
        make_optimizer(("tpe", {"liar_kernel": "wide"}), BRANIN_SPACE, 0)
