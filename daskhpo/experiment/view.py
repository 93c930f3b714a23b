"""The experiment's read API: results as a dataset, typed records, the best trial, the
Pareto front, what the optimizer was told, subscriptions, plots and the dashboard.

Every method here is safe to call from any thread while a run goes on; other layers
(plots, the dashboard, progress bars, loggers) read an experiment only through them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import xarray as xr

from ..objectives import objectives_from_attrs, signs
from ..optimizers import Trial
from ..pareto import non_dominated
from ..records import ReportRecord, TrialRecord, direction_sign
from ..store import History, Storage
from .state import Subscribers
from .teller import Teller, handles_constraints

__all__ = ["ExperimentView"]

logger = logging.getLogger(__name__)


class ExperimentView:
    """The read API of :class:`~daskhpo.Experiment` (its base class)."""

    name: str
    optimizer: Any
    _storage: Storage
    _subscribers: Subscribers
    #: a warm start's trials, told to the optimizer before this experiment's own
    _warm: list[TrialRecord]
    _dashboard: Any

    @property
    def _history(self) -> History:
        return self._storage.history

    # -- what it is --------------------------------------------------------------------
    @property
    def direction(self) -> str:
        """``"minimize"`` or ``"maximize"`` (the history's attr ``direction``)."""
        return str(self._history.attrs.get("direction", "minimize"))

    @property
    def objectives(self) -> dict[str, str]:
        """The objectives of a multi-objective experiment, name -> direction, in order.

        Empty for a single-objective experiment.  Stored in the history's attr
        ``objectives`` (JSON).
        """
        return objectives_from_attrs(self._history.attrs)

    @property
    def attrs(self) -> dict[str, Any]:
        """The experiment's stored attributes (name, space, algorithm, seed, version)."""
        return dict(self._history.attrs)

    @property
    def storage(self) -> str | None:
        """Where the history is stored, or ``None`` for an in-memory experiment."""
        return self._storage.path

    @property
    def quarantined(self) -> list[dict[str, Any]]:
        """Workers quarantined by this experiment's runs, oldest first.

        Each is a plain dict: ``worker`` (its address), ``host``, ``when`` (epoch
        seconds), ``why`` (the last error line of the trials that broke there) and
        ``trials`` (those run again elsewhere).  Stored in the history's attrs (JSON,
        ``quarantined``), so :func:`load_experiment` shows them too.
        """
        return json.loads(self._history.attrs.get("quarantined", "[]"))

    # -- results -----------------------------------------------------------------------
    @property
    def history(self) -> xr.Dataset:
        """Every trial so far, as an :class:`xarray.Dataset` (see :mod:`daskhpo.store.history`)."""
        return self._history.to_dataset()

    def records(self) -> list[TrialRecord]:
        """Every finished trial so far, by trial id, as typed records."""
        return self._history.records

    def reports(self, trial_id: int) -> list[ReportRecord]:
        """The intermediate reports of a finished trial, by step."""
        return self._history.reports(trial_id)

    def _new_teller(self) -> Teller:
        algorithm = self._history.attrs.get("algorithm")
        return Teller(self.direction, handles_constraints(self.optimizer, algorithm), self.objectives)

    @property
    def trials(self) -> list[Trial]:
        """Every finished trial so far, by trial id, exactly as the optimizer was told it.

        Signed to be minimized (negated for ``direction="maximize"``, each value by its
        objective's direction), and an infeasible trial penalized as the optimizer saw it
        (see ``docs/objectives.md``); the history and :meth:`records` keep the values the
        objective returned.
        """
        told = self._new_teller().replay(self._warm, self._history.events())
        return sorted(told, key=lambda t: t.id)

    @property
    def best(self) -> dict[str, Any] | None:
        """The best feasible completed trial: ``{"params", "objective", "trial"}``, or ``None``.

        The lowest objective, or the highest for ``direction="maximize"``; ties go to the
        earliest trial.  Only feasible trials count (every constraint the objective
        returned ``<= 0``; a trial without constraints is feasible): ``None`` when no
        completed trial is.

        Raises
        ------
        ValueError
            For an experiment with several objectives, which has no single best trial:
            :attr:`pareto_front` lists the trials no other one beats in every objective.
        """
        if self.objectives:
            raise ValueError(
                f"experiment {self.name!r} has several objectives ({', '.join(self.objectives)}): no single trial "
                "is best; use experiment.pareto_front for the trials no other one beats in every objective"
            )
        done = [r for r in self._history.records if r.ok and r.feasible]
        if not done:
            return None
        sign = direction_sign(self.direction)
        best = min(done, key=lambda r: (sign * r.objective, r.trial))
        return {"params": dict(best.params), "objective": best.objective, "trial": best.trial}

    @property
    def pareto_front(self) -> list[dict[str, Any]]:
        """The non-dominated completed (and feasible) trials of a multi-objective experiment.

        A trial is on the front when no other completed feasible trial is at least as good
        in every objective and better in one (each in its own direction).  Trials with
        equal values are all kept.

        Returns
        -------
        list of dict
            By trial id, each ``{"trial": id, "params": {...}, "values": {objective: value}}``
            with the values the objective returned.

        Raises
        ------
        ValueError
            For an experiment with one objective (use :attr:`best`).
        """
        objectives = self.objectives
        if not objectives:
            raise ValueError(f"experiment {self.name!r} has one objective: use experiment.best "
                             "(pareto_front is for experiments built with objectives=)")
        done = [r for r in self._history.records if r.ok and r.feasible and r.values]
        if not done:
            return []
        minimized = [[s * v for s, v in zip(signs(objectives), r.values)] for r in done]
        keep = non_dominated(minimized)
        return [{"trial": r.trial, "params": dict(r.params), "values": dict(zip(objectives, r.values))}
                for r, k in zip(done, keep) if k]

    # -- following ---------------------------------------------------------------------
    def subscribe(self, callback: Callable[[TrialRecord], None], *, replay: bool = False) -> Callable[[], None]:
        """Call ``callback`` with each trial that finishes from now on.

        The callback runs on the experiment's loop thread, after the trial is on disk and
        the optimizer was told of it; an exception it raises is logged, never stops the
        search.  Keep it quick (hand slow work to a thread of your own).

        Parameters
        ----------
        callback : callable
            Receives a :class:`~daskhpo.records.TrialRecord`.
        replay : bool, default False
            First call it with every trial already finished, in trial order; no trial is
            missed or given twice, even while trials arrive.

        Returns
        -------
        callable
            Call it to unsubscribe.
        """
        return self._subscribers.add(callback, (lambda: self._history.records) if replay else None)

    @property
    def subscribers(self) -> list[Callable[[TrialRecord], None]]:
        """The callbacks currently subscribed (see :meth:`subscribe`)."""
        return self._subscribers.callbacks

    @property
    def plot(self) -> Any:
        """Plots of this experiment: ``experiment.plot.regret()`` etc. (see :mod:`daskhpo.viz.plot`)."""
        from ..viz.plot import PlotAccessor

        return PlotAccessor(self)

    def dashboard(self, port: int = 0, *, address: str = "localhost") -> Any:
        """Serve a live Bokeh dashboard of this experiment from this process.

        It shows the trials so far and streams each new one as it finishes, while
        :meth:`workon` runs.  Calling it again returns the running dashboard (or moves it,
        when given another port or address).

        Parameters
        ----------
        port : int, default 0
            0 picks a free port.
        address : str, default "localhost"
            The interface to listen on; the default keeps it private to this machine.

        Returns
        -------
        daskhpo.viz.dashboard.Dashboard
            With ``.url`` and ``.stop()``.
        """
        from ..viz.dashboard import serve_experiment

        running = self._dashboard
        if running is not None and running.running:
            if port in (0, running.port) and address == running.address:
                return running
            running.stop()  # asked for another port or interface
        self._dashboard = serve_experiment(self, port=port, address=address)
        return self._dashboard
