"""The optimizer protocol as a test suite: conformance tests for your own algorithm.

Subclass :class:`OptimizerConformance` in a test module and give it a ``make_optimizer``
fixture; pytest then runs every conformance test on your optimizer::

    import pytest
    import daskhpo.testing

    class TestMine(daskhpo.testing.OptimizerConformance):
        @pytest.fixture
        def make_optimizer(self):
            return lambda space, seed: MyOptimizer(space, seed=seed)

The tests drive the optimizer as the experiment does, without Dask: ``ask`` and ``tell``
(several trials in flight, results in any order, failed trials, trials it never suggested,
the defaults run as trial 0), and check that suggestions are valid plain data, that the
same seed and results give the same suggestions, that an optimizer told a history continues
the run it came from, and that no pending state outlives its trial (:attr:`Optimizer.pending
<daskhpo.optimizers.Optimizer.pending>`).  The ``test_conditional_*`` tests do the same on a
conditional space (:data:`CONDITIONAL_SPACE`): a suggestion holds exactly the parameters its
own choices make active, each in range.  An algorithm whose class sets
:attr:`~daskhpo.optimizers.Optimizer.multi_objective` is also driven with objective vectors
(:attr:`Trial.values <daskhpo.optimizers.Trial.values>`); the others skip those tests.
Every algorithm is also told trials with constraints (:attr:`Trial.constraints
<daskhpo.optimizers.Trial.constraints>`, the ``test_constraints_*`` tests), as the experiment
tells them when an objective returns some.

This module imports pytest; ``import daskhpo`` does not import it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from .optimizers import CONTINUE, PRUNE, Optimizer, Report, Suggestion, Trial
from .space import Fidelity, Space

__all__ = ["OptimizerConformance", "SPACE", "CONDITIONAL_SPACE", "STATUSES"]

#: The default space of the suite: every kind of dimension (linear, log, integer, log
#: integer, categorical, categorical with ``None``, normal).
SPACE = Space(
    {
        "x": "uniform(-5, 5)",
        "lr": "loguniform(1e-5, 1)",
        "units": "randint(1, 64)",
        "depth": "loguniform(1, 100, discrete=True)",
        "kernel": "choices(['rbf', 'linear', 'poly'])",
        "weight": "choices([None, 'balanced'])",
        "noise": "normal(0, 1)",
    }
)

#: The conditional space of the ``test_conditional_*`` tests: a model choice whose branches
#: activate their own parameters (numeric, integer, log integer and categorical ones), a
#: nested condition (``degree`` only for a polynomial SVM kernel), and one unconditional
#: parameter.
CONDITIONAL_SPACE = Space(
    {
        "model": "choices(['svm', 'forest', 'knn'])",
        "kernel": "choices(['rbf', 'poly'], when={'model': 'svm'})",
        "degree": "randint(2, 5, when={'kernel': 'poly'})",
        "C": "loguniform(1e-3, 1e3, when={'model': 'svm'})",
        "trees": "randint(10, 500, when={'model': 'forest'})",
        "depth": "loguniform(1, 32, discrete=True, when={'model': 'forest'})",
        "k": "randint(1, 30, when={'model': 'knn'})",
        "weights": "choices(['uniform', 'distance'], when={'model': 'knn'})",
        "lr": "loguniform(1e-4, 1)",
    }
)

#: Statuses of finished trials, as the suite mixes them.
STATUSES = ("completed", "broken", "completed", "timeout", "completed", "lost", "pruned", "completed")

#: ``make_optimizer(space, seed)`` returns a fresh optimizer.
Factory = Callable[[Space, int], Optimizer]


class OptimizerConformance:
    """Tests every optimizer must pass; subclass it and define a ``make_optimizer`` fixture.

    The fixture returns a callable ``(space, seed) -> Optimizer`` building a fresh
    optimizer, with whatever options the algorithm needs.

    Attributes
    ----------
    space : Space
        The space the suggestions are checked in (default :data:`SPACE`).
    seed_independent : bool
        Set ``True`` for an algorithm whose suggestions ignore the seed (grid search); the
        test that different seeds give different suggestions is then skipped.  The
        ``ignores_seed`` fixture reads it; override the fixture where it varies with a
        parametrized ``make_optimizer``.
    conditional_space : Space or None
        The conditional space of the ``test_conditional_*`` tests (default
        :data:`CONDITIONAL_SPACE`); ``None`` skips them, for an optimizer that does not
        search conditional spaces (say so in its documentation).

    Notes
    -----
    Methods whose name starts with ``test_`` are the tests; :meth:`drive`, :meth:`objective`,
    :meth:`default_params` and :meth:`finish` are helpers that subclasses may reuse or
    override (:meth:`objective` for a space with other dimensions).
    """

    space: Space = SPACE
    seed_independent: bool = False
    conditional_space: Space | None = CONDITIONAL_SPACE

    # -- fixtures --------------------------------------------------------------------------
    @pytest.fixture
    def make_optimizer(self) -> Factory:
        """``(space, seed) -> Optimizer``; every subclass must define this fixture."""
        pytest.fail(f"{type(self).__name__} must define a make_optimizer fixture returning (space, seed) -> Optimizer")

    @pytest.fixture
    def ignores_seed(self) -> bool:
        """Whether the optimizer's suggestions ignore the seed (the class's ``seed_independent``)."""
        return self.seed_independent

    # -- helpers ---------------------------------------------------------------------------
    def objective(self, params: dict[str, Any]) -> float:
        """A deterministic function of every dimension, lowest near the point 0.3 of the unit cube.

        Parameters
        ----------
        params : dict
            A configuration of :attr:`space`.

        Returns
        -------
        float
        """
        # a parameter that the configuration makes inactive counts as the middle of its range
        unit = np.array([dim.to_unit(params[name]) if name in params else 0.5 for name, dim in self.space.items()])
        return float(np.sum((unit - 0.3) ** 2) + 0.1 * np.sum(unit))

    def default_params(self) -> dict[str, Any]:
        """What the experiment runs as trial 0 instead of the suggestion: the defaults.

        The space's :meth:`~daskhpo.Space.defaults` if every dimension has one, else the
        configuration at 0.37 in the unit cube (fidelity at its maximum, as for defaults).

        Returns
        -------
        dict
        """
        defaults = self.space.defaults()
        if defaults is not None:
            return defaults
        params = self.space.from_unit([0.37] * len(self.space))
        for name, dim in self.space.items():
            if isinstance(dim, Fidelity):
                params[name] = dim.cast(dim.high)
        return params

    def finish(self, trial_id: int, suggestion: Suggestion, status: str, params: dict | None = None) -> Trial:
        """The finished trial of a suggestion, as the experiment tells it.

        Parameters
        ----------
        trial_id : int
        suggestion : Suggestion
            What ``ask`` returned; its ``parent`` and ``checkpoint`` are told back.
        status : str
            The trial's status; the objective is NaN unless it is ``"completed"`` or
            ``"pruned"`` (pruned at step 1).
        params : dict, optional
            The parameters that ran, if not the suggested ones.

        Returns
        -------
        Trial
        """
        params = dict(suggestion.params if params is None else params)
        value = self.objective(params) if status in ("completed", "pruned") else math.nan
        return Trial(
            trial_id,
            params,
            status,
            value,
            parent=suggestion.parent,
            checkpoint=suggestion.checkpoint,
            last_step=1.0 if status == "pruned" else math.nan,
        )

    def drive(self, opt: Optimizer, n: int, start: int = 0, batch: int = 1) -> list[dict]:
        """Ask ``batch`` suggestions, tell their results, repeat until ``n`` trials or ``ask`` gives ``None``.

        Parameters
        ----------
        opt : Optimizer
        n : int
            Trials to run.
        start : int, default 0
            Id of the first trial.
        batch : int, default 1
            Trials in flight at once.

        Returns
        -------
        list of dict
            The suggested parameters, in trial order.
        """
        suggested: list[dict] = []
        trial_id = start
        while len(suggested) < n:
            pending = []
            for _ in range(batch):
                suggestion = opt.ask(trial_id)
                if suggestion is None:
                    break
                pending.append((trial_id, suggestion))
                trial_id += 1
            if not pending:
                break
            for tid, suggestion in pending:
                opt.tell(self.finish(tid, suggestion, "completed"))
                suggested.append(suggestion.params)
        return suggested

    def _build(self, make_optimizer: Factory, seed: int = 0) -> Optimizer:
        opt = make_optimizer(self.space, seed)
        assert isinstance(opt, Optimizer), f"make_optimizer returned {opt!r}, not an Optimizer"
        return opt

    def _valid(self, params: dict) -> None:
        space = self.space
        if space.conditional:  # say which parameters are wrong, before validate drops or misses them
            active = {name for name in space if space.is_active(name, params)}
            assert set(params) == active, (
                f"suggestion {params!r} should hold exactly its active parameters {sorted(active)}: "
                f"inactive {sorted(set(params) - active)}, missing {sorted(active - set(params))}"
            )
        assert space.validate(params) == params, f"invalid suggestion {params!r}"

    # -- the protocol ----------------------------------------------------------------------
    def test_suggestions_are_valid_configurations(self, make_optimizer):
        """Forty suggestions, four in flight at a time, are all valid configurations of the space."""
        opt = self._build(make_optimizer)
        for params in self.drive(opt, 40, batch=4):
            self._valid(params)

    def test_suggestion_is_plain_data(self, make_optimizer):
        """A suggestion is a :class:`Suggestion` of plain, JSON-serializable values."""
        suggestion = self._build(make_optimizer).ask(0)
        assert isinstance(suggestion, Suggestion)
        json.dumps(suggestion.params)  # plain Python values, storable as they are

    def test_same_seed_and_results_give_same_suggestions(self, make_optimizer):
        """The same seed and the same results give the same suggestions."""
        first = self.drive(self._build(make_optimizer, 3), 30, batch=3)
        assert first == self.drive(self._build(make_optimizer, 3), 30, batch=3)

    def test_different_seeds_give_different_suggestions(self, make_optimizer, ignores_seed):
        """Different seeds give different suggestions (skipped where ``ignores_seed``)."""
        if ignores_seed:
            pytest.skip("suggestions ignore the seed")
        assert self.drive(self._build(make_optimizer, 1), 10) != self.drive(self._build(make_optimizer, 2), 10)

    def test_resume_from_history_continues_the_same_run(self, make_optimizer):
        """An optimizer told a stored history suggests what the original would have next."""
        self._check_resume(make_optimizer, seed=5, told=25, next_=5)

    def _check_resume(self, make_optimizer: Factory, seed: int, told: int, next_: int) -> None:
        """Run ``told`` trials, tell them to a fresh optimizer: both suggest the same ``next_``."""
        original = self._build(make_optimizer, seed)
        history = []  # what the history stores: parameters, results and lineage
        for trial_id in range(told):
            suggestion = original.ask(trial_id)
            if suggestion is None:
                break
            history.append(self.finish(trial_id, suggestion, "completed"))
            original.tell(history[-1])
        resumed = self._build(make_optimizer, seed)
        for trial in history:
            resumed.tell(trial)
        assert self.drive(resumed, next_, start=told) == self.drive(original, next_, start=told)

    def test_failed_trials_are_tolerated(self, make_optimizer):
        """Broken, timed-out and lost trials are told without harm."""
        opt = self._build(make_optimizer)
        for trial_id in range(12):
            suggestion = opt.ask(trial_id)
            status = ["broken", "timeout", "lost", "completed"][trial_id % 4]
            value = self.objective(suggestion.params) if status == "completed" else math.nan
            opt.tell(Trial(trial_id, suggestion.params, status, value))
        self._valid(opt.ask(12).params)

    def test_parallel_suggestions_are_distinct(self, make_optimizer):
        """Eight asks with nothing told back (eight trials in flight) do not repeat a point."""
        opt = self._build(make_optimizer, 11)
        self.drive(opt, 20)
        batch = [opt.ask(100 + i).params for i in range(8)]
        keys = {json.dumps(p, sort_keys=True) for p in batch}
        assert len(keys) == 8

    def test_told_trials_it_never_suggested(self, make_optimizer):
        """Resume and user-enqueued points tell trials the optimizer did not ask for.

        They run at the lowest fidelity, if the space has a fidelity dimension, so that a
        multi-fidelity algorithm has work left.
        """
        opt = self._told_foreign_trials(make_optimizer, 15, np.random.default_rng(0))
        self._valid(opt.ask(15).params)

    def _told_foreign_trials(self, make_optimizer: Factory, n: int, rng: np.random.Generator) -> Optimizer:
        """A fresh optimizer told ``n`` completed prior draws (at the lowest fidelity) it never asked for."""
        opt = self._build(make_optimizer, 2)
        for trial_id in range(n):
            params = self.space.sample(rng)
            for name, dim in self.space.items():
                if isinstance(dim, Fidelity):
                    params[name] = dim.cast(dim.low)
            opt.tell(Trial(trial_id, params, "completed", self.objective(params)))
        return opt

    def test_fills_leave_the_optimizer_alone(self, make_optimizer):
        """``fill`` (for idle slots, from another thread) is valid and changes no state."""
        opt, twin = self._build(make_optimizer, 4), self._build(make_optimizer, 4)
        if not opt.fills_idle_slots:
            return
        done = self.drive(opt, 12)
        self.drive(twin, 12)
        assert opt.ask(12).params == twin.ask(12).params  # one trial in flight
        incumbents = sorted(done, key=self.objective)[:3]
        fills = [opt.fill(100 + i, incumbents).params for i in range(6)]
        for params in fills:
            self._valid(params)
        assert [opt.fill(100 + i, incumbents).params for i in range(6)] == fills  # seeded by the trial id
        assert opt.pending == twin.pending
        assert opt.ask(13).params == twin.ask(13).params

    def test_config_is_json(self, make_optimizer):
        """``config`` is a JSON-serializable dict and ``name`` a string."""
        opt = self._build(make_optimizer)
        assert isinstance(opt.config, dict)
        json.dumps(opt.config)
        assert isinstance(opt.name, str)

    def test_report_decisions_are_plain_data(self, make_optimizer):
        """Intermediate reports get "continue" or "prune"; pruned trials are then told."""
        opt = self._build(make_optimizer, 4)
        for trial_id in range(10):
            suggestion = opt.ask(trial_id)
            if suggestion is None:
                break
            assert suggestion.parent is None or isinstance(suggestion.parent, int)
            assert suggestion.checkpoint is None or isinstance(suggestion.checkpoint, int)
            value = self.objective(suggestion.params)
            last = 0
            for step in (1, 2, 3, 5, 9):
                last = step
                decision = opt.report(Report(trial_id, suggestion.params, step, value + 1 / step))
                assert decision in (CONTINUE, PRUNE)
                if decision == PRUNE:
                    break
            status = "pruned" if decision == PRUNE else "completed"
            opt.tell(
                Trial(
                    trial_id,
                    suggestion.params,
                    status,
                    value + 1 / last,
                    last_step=float(last),
                    parent=suggestion.parent,
                    checkpoint=suggestion.checkpoint,
                )
            )
        self._valid(opt.ask(10).params)

    # -- asynchronous use ------------------------------------------------------------------
    def _shuffled_run(self, make_optimizer: Factory, order_seed: int) -> list[dict]:
        """Warm up, then three rounds: ask up to 8, tell them back shuffled, mixed statuses."""
        opt = self._build(make_optimizer, 7)
        suggested = self.drive(opt, 12)
        more, trial_id = self._shuffled_rounds(
            opt, 12, 3, 8, order_seed,
            lambda tid, suggestion, round_: self.finish(tid, suggestion, STATUSES[(tid + round_) % len(STATUSES)]))
        self._valid(opt.ask(trial_id).params)
        return suggested + more

    def _shuffled_rounds(
        self, opt: Optimizer, trial_id: int, rounds: int, size: int, order_seed: int,
        finish: Callable[[int, Suggestion, int], Trial],
    ) -> tuple[list[dict], int]:
        """``rounds`` times: ask up to ``size``, tell ``finish(id, suggestion, round)`` back shuffled.

        Returns the suggested parameters and the next trial id; checks that nothing is
        pending at the end.
        """
        suggested = []
        for round_ in range(rounds):
            batch = []
            for _ in range(size):
                suggestion = opt.ask(trial_id)
                if suggestion is None:
                    break
                self._valid(suggestion.params)
                batch.append((trial_id, suggestion))
                trial_id += 1
            for i in np.random.default_rng([order_seed, round_]).permutation(len(batch)):
                opt.tell(finish(*batch[i], round_))
            suggested += [s.params for _, s in batch]
        assert opt.pending == (), f"pending after every trial was told: {opt.pending}"
        return suggested, trial_id

    def test_results_in_any_order(self, make_optimizer):
        """Results come back in another order than asked, some failed: suggestions stay valid
        and are the same for the same order."""
        first = self._shuffled_run(make_optimizer, 0)
        assert first == self._shuffled_run(make_optimizer, 0)
        self._shuffled_run(make_optimizer, 1)

    @pytest.mark.parametrize("status", ["completed", "broken"])
    def test_defaults_first_trial(self, make_optimizer, status):
        """Trial 0 is asked for, then runs the defaults instead of the suggestion."""

        def run() -> list[dict]:
            opt = self._build(make_optimizer, 9)
            first = opt.ask(0)
            assert first is not None
            opt.tell(self.finish(0, first, status, params=self.default_params()))
            suggested = self.drive(opt, 20, start=1, batch=4)
            assert suggested, "no suggestion after the defaults ran as trial 0"
            for params in suggested:
                self._valid(params)
            assert opt.pending == (), f"pending after every trial was told: {opt.pending}"
            return suggested

        assert run() == run()

    def test_pending_trials_are_cleaned_up(self, make_optimizer):
        """``pending`` lists only trials in flight, and nothing once all of them were told."""
        opt = self._build(make_optimizer, 6)
        self.drive(opt, 12)
        assert opt.pending == ()
        with pytest.raises(AttributeError):
            opt.pending = ()  # read-only
        asked = {}
        for trial_id in range(12, 20):
            suggestion = opt.ask(trial_id)
            if suggestion is None:
                break
            asked[trial_id] = suggestion
        pending = opt.pending
        assert isinstance(pending, tuple) and set(pending) <= set(asked), pending
        for i, (trial_id, suggestion) in enumerate(asked.items()):
            opt.tell(self.finish(trial_id, suggestion, ["broken", "lost", "timeout", "pruned", "completed"][i % 5]))
            assert trial_id not in opt.pending
            assert set(opt.pending) <= set(asked)
        assert opt.pending == ()

    # -- conditional spaces ------------------------------------------------------------------
    def _on_conditional_space(self) -> OptimizerConformance:
        """This suite, on :attr:`conditional_space` (the test is skipped if it is ``None``)."""
        if self.conditional_space is None:
            pytest.skip("conditional_space is None: the optimizer does not search conditional spaces")
        suite = type(self)()
        suite.space = self.conditional_space
        return suite

    def test_conditional_suggestions_hold_only_active_parameters(self, make_optimizer):
        """On a conditional space, suggestions (up to eight in flight, results back in any order,
        some failed) hold exactly the parameters their own choices activate, each in range, and
        are the same for the same seed and order."""
        suite = self._on_conditional_space()
        assert suite._shuffled_run(make_optimizer, 0) == suite._shuffled_run(make_optimizer, 0)

    def test_conditional_told_trials_it_never_suggested(self, make_optimizer):
        """On a conditional space, trials told without their inactive parameters (as the history
        stores them) are learnt from without error, and the next suggestions stay valid."""
        suite = self._on_conditional_space()
        opt = suite._told_foreign_trials(make_optimizer, 25, np.random.default_rng(1))
        for params in suite.drive(opt, 4, start=25, batch=2):
            suite._valid(params)

    def test_conditional_resume_continues_the_same_run(self, make_optimizer):
        """On a conditional space, an optimizer told the stored history (trials without their
        inactive parameters) suggests what the original would have next."""
        self._on_conditional_space()._check_resume(make_optimizer, seed=4, told=22, next_=3)

    # -- constraints ----------------------------------------------------------------------
    def constraints(self, params: dict[str, Any]) -> tuple[float, ...]:
        """The constraints of the ``test_constraints_*`` tests (feasible when all are ``<= 0``):
        one value, infeasible for about a third of the default space; ``(-1.0,)`` for a
        configuration without ``x``."""
        x = params.get("x")
        return (-1.0,) if not isinstance(x, (int, float)) else (float(x) - 1.5,)

    def _constrained(self, trial: Trial) -> Trial:
        """``trial`` with its constraints, as the experiment tells them (:attr:`Trial.constraints`)."""
        if trial.status not in ("completed", "pruned"):
            return trial
        return Trial(trial.id, trial.params, trial.status, trial.objective, trial.metrics, parent=trial.parent,
                     checkpoint=trial.checkpoint, last_step=trial.last_step, values=trial.values,
                     constraints=self.constraints(dict(trial.params)))

    def _constrained_run(self, make_optimizer: Factory, order_seed: int) -> list[dict]:
        opt = self._build(make_optimizer, 3)
        return self._shuffled_rounds(
            opt, 0, 4, 6, order_seed,
            lambda tid, suggestion, round_: self._constrained(
                self.finish(tid, suggestion, STATUSES[(tid + round_) % len(STATUSES)] if round_ else "completed")))[0]

    def test_constraints_are_told(self, make_optimizer):
        """Trials told with constraints (some infeasible, out of order, some failed): suggestions
        stay valid, and the same results in the same order give the same suggestions."""
        first = self._constrained_run(make_optimizer, 0)
        assert first == self._constrained_run(make_optimizer, 0)
        self._constrained_run(make_optimizer, 1)

    def test_constraints_resume(self, make_optimizer):
        """Told a stored history with constraints, it suggests what the original would have next."""
        original = self._build(make_optimizer, 6)
        history = []
        for trial_id in range(20):
            suggestion = original.ask(trial_id)
            if suggestion is None:
                break
            history.append(self._constrained(self.finish(trial_id, suggestion, "completed")))
            original.tell(history[-1])
        resumed = self._build(make_optimizer, 6)
        for trial in history:
            resumed.tell(trial)
        start = len(history)
        assert self.drive(resumed, 3, start=start) == self.drive(original, 3, start=start)

    # -- several objectives (algorithms whose class sets ``multi_objective``) --------------
    def objectives(self, params: dict[str, Any]) -> tuple[float, float]:
        """Two conflicting minimized objectives: :meth:`objective`, and the distance to 0.7.

        Parameters
        ----------
        params : dict

        Returns
        -------
        tuple of float
        """
        unit = self.space.to_unit(params)
        return self.objective(params), float(np.sum((unit - 0.7) ** 2))

    def _vector_run(self, make_optimizer: Factory, seed: int, order_seed: int) -> tuple[Optimizer, list[dict]]:
        """Five rounds of up to 6 in flight told back shuffled (mixed statuses after the first),
        with objective vectors."""
        opt = self._build(make_optimizer, seed)
        if not type(opt).multi_objective:
            pytest.skip(f"{type(opt).__name__} searches one objective (multi_objective is False)")

        def finish(tid: int, suggestion: Suggestion, round_: int) -> Trial:
            status = "completed" if round_ == 0 else STATUSES[(tid + round_) % len(STATUSES)]
            values = self.objectives(suggestion.params) if status == "completed" else ()
            return Trial(tid, suggestion.params, status, math.nan, values=values,
                         parent=suggestion.parent, checkpoint=suggestion.checkpoint)

        return opt, self._shuffled_rounds(opt, 0, 5, 6, order_seed, finish)[0]

    def test_objective_vectors_are_searched(self, make_optimizer):
        """A multi-objective algorithm told :attr:`Trial.values` (out of order, some failed)
        makes valid, reproducible suggestions and keeps no pending state."""
        _, first = self._vector_run(make_optimizer, 8, 0)
        assert first == self._vector_run(make_optimizer, 8, 0)[1]
        opt, _ = self._vector_run(make_optimizer, 8, 1)
        self._valid(opt.ask(1000).params)

    def test_objective_vectors_resume(self, make_optimizer):
        """Told a stored multi-objective history, it suggests what the original would have next."""
        if not type(self._build(make_optimizer)).multi_objective:
            pytest.skip("searches one objective (multi_objective is False)")
        history = []
        probe = self._build(make_optimizer, 4)
        for trial_id in range(20):
            suggestion = probe.ask(trial_id)
            trial = Trial(trial_id, suggestion.params, "completed", math.nan, values=self.objectives(suggestion.params))
            probe.tell(trial)
            history.append(trial)
        resumed = self._build(make_optimizer, 4)
        for trial in history:
            resumed.tell(trial)
        assert [resumed.ask(20 + i).params for i in range(3)] == [probe.ask(20 + i).params for i in range(3)]
