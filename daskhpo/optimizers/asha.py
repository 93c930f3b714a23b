"""ASHA: asynchronous successive halving (Li et al., "A System for Massively Parallel
Hyperparameter Tuning", MLSys 2020).

Rungs sit at resources ``min_resource * reduction_factor**k`` (and ``max_resource`` on top).
A configuration goes up a rung as soon as it is in the best ``1/reduction_factor`` of the
results its rung has *so far*: nobody waits for a round to fill.

Two ways to spend resource, chosen by the space:

**Reports inside the trial** (no ``fidelity(...)`` dimension).  Each trial trains up to
``max_resource`` and calls :func:`daskhpo.report` with ``step`` = the resource used.  The
first report at or past a rung enters it; the trial goes on if it ranks in the rung's best
``n // reduction_factor`` of the ``n`` results there, itself included (ties by trial id),
and is pruned otherwise.  This is the paper's promotion rule (nothing goes up a rung before
the rung has ``reduction_factor`` results) applied when the trial reaches the rung, since a
running trial cannot wait: the stopping variant of ASHA, where a stopped trial never
resumes.

**A fidelity dimension** (``fidelity(low, high, base)``).  Each trial runs one configuration
at one fidelity, a rung's resource.  ``ask`` first promotes the best unpromoted
configuration of the highest rung that has one in its best ``n // reduction_factor``: the
same parameters at the next rung's fidelity, with ``parent`` and ``checkpoint`` = the
trial it promotes, so that the objective can continue from :func:`daskhpo.load_checkpoint`
rather than start over.  Otherwise it draws a new configuration from the sampler at the
lowest rung (the promotion variant: nothing is ever stopped).  The dimension's ``low``,
``high`` and ``base`` are the defaults of ``min_resource``, ``max_resource`` and
``reduction_factor``.

New configurations come from a pluggable ``sampler`` (any registered algorithm or optimizer
object; ``"random"`` by default; a model-based one gives BOHB-style search).  The sampler is
told every trial that started a new configuration.

All decisions depend only on the seed and the order of results, and are rebuilt from the
history on resume (reports are replayed before their trial, lineage comes from ``parent``).
"""

from __future__ import annotations

import bisect
import math
from typing import Any

from ..space import Space
from .base import CONTINUE, PRUNE, Optimizer, Report, Suggestion, Trial, check_option, option_error

__all__ = ["ASHA", "rung_resources"]


def rung_resources(min_resource: float, max_resource: float, reduction_factor: float) -> list[float]:
    """``min * eta**k`` below ``max``, then ``max``: the resources of the rungs."""
    rungs = []
    k = 0
    while True:
        r = min_resource * reduction_factor**k
        if r >= max_resource * (1 - 1e-9):
            break
        rungs.append(float(r))
        k += 1
    rungs.append(float(max_resource))
    return rungs


class Bracket:
    """The rungs of one successive-halving bracket and the results in them.

    Each rung keeps its results sorted by ``(objective, trial id)`` (``bisect``), and
    apart the ones not yet promoted, so that judging a report and finding a promotion
    cost ``O(log n)`` comparisons per rung instead of a sort of the rung.
    """

    def __init__(self, rungs: list[float], eta: float) -> None:
        self.rungs = rungs
        self.eta = eta
        #: per rung: config id -> (objective, trial id)
        self.results: list[dict[int, tuple[float, int]]] = [{} for _ in rungs]
        #: per rung: config ids sent to the next rung
        self.promoted: list[set[int]] = [set() for _ in rungs]
        #: per rung: (objective, trial id, config id), sorted; and those not promoted
        self._ranked: list[list[tuple[float, int, int]]] = [[] for _ in rungs]
        self._waiting: list[list[tuple[float, int, int]]] = [[] for _ in rungs]

    @staticmethod
    def _remove(items: list, key: tuple) -> None:
        i = bisect.bisect_left(items, key)
        if i < len(items) and items[i] == key:
            del items[i]

    def record(self, k: int, cid: int, value: float, trial_id: int) -> tuple[float, int, int]:
        """Put (or replace) the result of config ``cid`` in rung ``k``; its sort key."""
        old = self.results[k].get(cid)
        if old is not None:
            self._remove(self._ranked[k], (*old, cid))
            self._remove(self._waiting[k], (*old, cid))
        self.results[k][cid] = (value, trial_id)
        key = (value, trial_id, cid)
        bisect.insort(self._ranked[k], key)
        if cid not in self.promoted[k]:
            bisect.insort(self._waiting[k], key)
        return key

    def promote(self, k: int, cid: int) -> None:
        """Mark config ``cid`` of rung ``k`` as sent to rung ``k + 1``."""
        self.promoted[k].add(cid)
        result = self.results[k].get(cid)
        if result is not None:
            self._remove(self._waiting[k], (*result, cid))

    def top(self, k: int) -> list[int]:
        """Config ids in the best ``n // eta`` of the ``n`` results of rung ``k``."""
        ranked = self._ranked[k]
        return [cid for _, _, cid in ranked[: int(len(ranked) // self.eta)]]

    def judge(self, k: int, cid: int, value: float, trial_id: int) -> str:
        """Stopping variant: enter rung ``k``; continue iff in the best ``n // eta`` so far."""
        key = self.record(k, cid, value, trial_id)
        ranked = self._ranked[k]
        position = bisect.bisect_left(ranked, key)
        return CONTINUE if position < int(len(ranked) // self.eta) else PRUNE

    def promotion(self) -> tuple[int, int] | None:
        """Promotion variant: ``(rung, config id)`` to run at rung + 1, highest rung first."""
        for k in range(len(self.rungs) - 2, -1, -1):
            waiting = self._waiting[k]
            # the best result not yet promoted is promotable iff it ranks in the top n // eta
            if waiting and bisect.bisect_left(self._ranked[k], waiting[0]) < int(len(self._ranked[k]) // self.eta):
                return k, waiting[0][2]
        return None

    def rung_of(self, resource: float) -> int:
        """The rung whose resource is nearest ``resource`` (in log scale)."""
        return min(range(len(self.rungs)), key=lambda k: abs(math.log(self.rungs[k]) - math.log(resource)))


class SuccessiveHalving(Optimizer):
    """What ASHA and Hyperband share: brackets, reports, promotions, the sampler.

    Subclasses set ``self.brackets`` and choose a new configuration's bracket
    (:meth:`_bracket_for`).
    """

    def __init__(
        self,
        space: Space,
        seed: int | None = None,
        min_resource: float | None = None,
        max_resource: float | None = None,
        reduction_factor: float | None = None,
        sampler: Any = "random",
    ) -> None:
        super().__init__(space, seed)
        fid = self.space.fidelity
        self.fidelity = fid.name if fid is not None else None
        if min_resource is None:
            min_resource = fid.low if fid is not None else 1
        if max_resource is None:
            max_resource = fid.high if fid is not None else 81
        if reduction_factor is None:
            reduction_factor = fid.base if fid is not None else 3
        for key, value in (("min_resource", min_resource), ("max_resource", max_resource), ("reduction_factor", reduction_factor)):
            check_option(self.name, key, value)
        if not 0 < min_resource < max_resource:
            raise option_error(
                self.name,
                "min_resource",
                f"needs 0 < min_resource < max_resource, got {min_resource!r} and {max_resource!r}",
            )
        check_option(self.name, "reduction_factor", reduction_factor, low=1, low_open=True)
        if fid is not None and not (fid.low <= min_resource and max_resource <= fid.high):
            raise option_error(
                self.name,
                "max_resource" if min_resource >= fid.low else "min_resource",
                f"resources [{min_resource}, {max_resource}] are outside the fidelity dimension {fid.name!r} = {fid}",
            )
        self.min_resource, self.max_resource, self.reduction_factor = min_resource, max_resource, reduction_factor
        self.rungs = rung_resources(min_resource, max_resource, reduction_factor)
        from . import make_optimizer  # the registry imports this module lazily

        self._sampler_spec = sampler
        self.sampler = make_optimizer(sampler, self.space, self.seed)
        if isinstance(self.sampler, SuccessiveHalving):
            raise option_error(self.name, "sampler", "must not itself be a multi-fidelity algorithm")
        self.brackets: list[Bracket] = [Bracket(self.rungs, reduction_factor)]
        self._bracket: dict[int, int] = {}  # config id -> bracket
        self._config: dict[int, int] = {}  # trial id -> config id
        self._rung: dict[int, int] = {}  # trial id -> rung (fidelity mode)
        self._params: dict[int, dict[str, Any]] = {}  # config id -> parameters
        self._judged: dict[int, tuple[int, str]] = {}  # trial id -> (rung, decision), reports mode

    # -- configuration -----------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        """The options, as given (stored in the history's attrs)."""
        from . import algorithm_spec

        spec = algorithm_spec(self._sampler_spec)
        return {
            "min_resource": self.min_resource,
            "max_resource": self.max_resource,
            "reduction_factor": self.reduction_factor,
            "sampler": spec,
        }

    def _bracket_for(self, trial_id: int) -> int:
        """The bracket of a new configuration started by ``trial_id``."""
        return 0

    @property
    def pending(self) -> tuple[int, ...]:
        """Trials asked for and not yet told, here or in the sampler."""
        own = tuple(self._pending)
        return own + tuple(t for t in self.sampler.pending if t not in own)

    def needed_checkpoints(self) -> set[int]:
        """Trials a promotion may still start from: unpromoted results below the top rung.

        Without a fidelity dimension trials never start from a checkpoint: none.
        """
        if self.fidelity is None:
            return set()
        return {trial for b in self.brackets for k in range(len(b.rungs) - 1)
                for cid, (_, trial) in b.results[k].items() if cid not in b.promoted[k]}

    def _resource(self, bracket: Bracket, k: int) -> Any:
        return self.space[self.fidelity].cast(bracket.rungs[k])

    # -- protocol ----------------------------------------------------------------------
    def ask(self, trial_id: int) -> Suggestion | None:
        """Promote a configuration (fidelity mode), else start a new one from the sampler."""
        if self.fidelity is not None:
            for bracket in self.brackets:
                found = bracket.promotion()
                if found is None:
                    continue
                k, cid = found
                bracket.promote(k, cid)
                source = bracket.results[k][cid][1]
                params = dict(self._params[cid])
                params[self.fidelity] = self._resource(bracket, k + 1)
                self._config[trial_id], self._rung[trial_id] = cid, k + 1
                self._pending.add(trial_id)
                return Suggestion(params, parent=source, checkpoint=source)
        suggestion = self.sampler.ask(trial_id)
        if suggestion is None:
            return None
        self._pending.add(trial_id)
        params = dict(suggestion.params)
        b = self._bracket_for(trial_id)
        self._bracket[trial_id] = b
        self._config[trial_id] = trial_id
        if self.fidelity is not None:
            params[self.fidelity] = self._resource(self.brackets[b], 0)
            self._rung[trial_id] = 0
            self._params[trial_id] = params
        return Suggestion(params)

    def _locate(self, trial: Trial) -> tuple[int, int]:
        """``(config id, bracket)`` of a told trial, rebuilding lineage on resume."""
        cid = self._config.get(trial.id)
        if cid is None:
            parent = trial.parent
            cid = self._config.get(parent, parent) if parent is not None else trial.id
            self._config[trial.id] = cid
        if cid not in self._bracket:
            self._bracket[cid] = self._bracket_for(cid)
        return cid, self._bracket[cid]

    def tell(self, trial: Trial) -> None:
        """Record a result in its rung, with the parameters (and fidelity) that ran."""
        self._pending.pop(trial.id)
        cid, b = self._locate(trial)
        bracket = self.brackets[b]
        if cid == trial.id:
            self.sampler.tell(trial)
        if self.fidelity is None:
            return
        if cid == trial.id or cid not in self._params:
            # what ran, which may not be what was suggested (the defaults as trial 0)
            self._params[cid] = dict(trial.params)
        k = self._rung.get(trial.id)
        ran = float(trial.params[self.fidelity])
        if k is not None and not math.isclose(float(self._resource(bracket, k)), ran):
            k = self._rung[trial.id] = bracket.rung_of(ran)  # it ran at another fidelity
        if k is None:  # resume, or a trial this instance did not suggest
            k = bracket.rung_of(ran)
            if cid != trial.id and k > 0:
                bracket.promote(k - 1, cid)
            self._rung[trial.id] = k
        if trial.ok:
            bracket.record(k, cid, trial.objective, trial.id)

    def report(self, report: Report) -> str:
        """Judge a trial when it reaches a rung (reports mode); continue otherwise."""
        if self.fidelity is not None or not math.isfinite(report.objective):
            return CONTINUE
        judged = self._judged.get(report.trial_id)
        if judged is not None and judged[1] == PRUNE:
            return PRUNE
        if report.trial_id not in self._config:
            self._config[report.trial_id] = report.trial_id
        cid = report.trial_id
        if cid not in self._bracket:
            self._bracket[cid] = self._bracket_for(cid)
        bracket = self.brackets[self._bracket[cid]]
        # the highest rung (below the top, which is completion) this step has reached
        k = max((i for i, r in enumerate(bracket.rungs[:-1]) if report.step >= r * (1 - 1e-9)), default=None)
        if k is None or (judged is not None and judged[0] >= k):
            return CONTINUE
        decision = bracket.judge(k, cid, report.objective, report.trial_id)
        self._judged[report.trial_id] = (k, decision)
        return decision


class ASHA(SuccessiveHalving):
    """Asynchronous successive halving (see the module documentation).

    Parameters
    ----------
    space : Space
    seed : int, optional
    min_resource, max_resource : float, optional
        Resource of the lowest rung and of the top (the steps of reports, or fidelity
        values).  Default: the fidelity dimension's ``low`` and ``high``, else 1 and 81.
    reduction_factor : float, optional
        ``eta``: one configuration in ``eta`` goes up a rung.  Default: the fidelity
        dimension's ``base``, else 3.
    sampler : str, (str, dict) or Optimizer, default "random"
        Where new configurations come from.

    Examples
    --------
    >>> algorithm = ("asha", {"min_resource": 1, "max_resource": 81, "reduction_factor": 3})
    """

    name = "asha"
