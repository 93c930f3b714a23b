"""CMA-ES through the `cmaes <https://github.com/CyberAgentAILab/cmaes>`_ package, asynchronously.

The search runs in a box ``[0, 1]^d``, one coordinate per searched parameter:

* real parameters and log-scaled integers: their unit coordinate (``to_unit``: log scale and
  the quantiles of ``normal`` priors come for free); a log-scaled integer is rounded by its
  own ``from_unit``;
* linear integers and categorical parameters: the position of the value among the ``k``
  values, scaled to ``index / (k - 1)``, a discrete coordinate of ``cmaes.CMAwM`` (CMA-ES with
  margin, Hamano et al. 2022) so that the distribution never collapses onto one value.  A
  categorical parameter is thereby given an order (that of its choices): CMA-ES suits
  numeric spaces, and ``auto`` does not pick it for categorical ones.

Asynchrony: a suggestion is a fresh draw from the *current* distribution (seeded by the
trial id), so any number of trials can be handed out as slots free and nothing ever waits.
Completed trials are collected in the order they are told; each time ``popsize`` of them
have arrived, they are told to the CMA as one generation.  Solutions drawn from an earlier
generation's distribution may so enter a later one (a steady-state variant, as
asynchronous CMA-ES implementations do).

Restarts: when the CMA's own stopping tests fire (``should_stop``), a new CMA starts from a
random mean with a doubled population (IPOP, Auger & Hansen 2005).  Trials whose id is
below the largest id told before the restart belong to the old run and are not told to the
new one.

Everything the optimizer keeps is a function of the seed and the trials told, in order: a
resumed run (told the stored history) reaches the same state as the live one.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..space import Categorical, Fidelity, Integer, Space
from .base import Optimizer, Suggestion, Trial, check_option

__all__ = ["CMAES"]

logger = logging.getLogger(__name__)

# linear integers with more values than this are searched as continuous coordinates
_MAX_DISCRETE = 10_000


class CMAES(Optimizer):
    """CMA-ES with margin (mixed integer), IPOP restarts and asynchronous generations.

    Parameters
    ----------
    space : Space
    seed : int, optional
    sigma0 : float, default 1/6
        Initial step size in the unit box (Optuna's choice: a sixth of the range).
    popsize : int, optional
        Population size of the first run (default ``4 + floor(3 ln d)``, the CMA-ES default).
    restart : {"ipop", None}, default "ipop"
        Restart strategy when a run converges: ``"ipop"`` multiplies the population by
        ``inc_popsize`` and starts from a random mean; ``None`` never restarts.
    inc_popsize : int, default 2
        Factor of the population at each IPOP restart.

    Notes
    -----
    Trials that did not complete with a finite objective are not told to the CMA.  In a
    conditional space every parameter has a coordinate; a trial that lacks one (inactive)
    is told the distribution's current mean there, so it does not move that coordinate.
    A suggestion costs one draw (``O(d^2)``), a generation one CMA update (``O(d^3)``).
    """

    name = "cmaes"

    def __init__(
        self,
        space: Space,
        seed: int | None = None,
        sigma0: float = 1 / 6,
        popsize: int | None = None,
        restart: str | None = "ipop",
        inc_popsize: int = 2,
    ) -> None:
        super().__init__(space, seed)
        check_option("cmaes", "sigma0", sigma0, low=0, high=1, low_open=True)
        check_option("cmaes", "popsize", popsize, "int", low=2, optional=True)
        check_option("cmaes", "restart", restart, "choice", choices=("ipop", None))
        check_option("cmaes", "inc_popsize", inc_popsize, "int", low=1)
        self.sigma0, self.popsize, self.restart, self.inc_popsize = float(sigma0), popsize, restart, inc_popsize
        # one coordinate per searched parameter: (name, dim, k) with k values if discrete, else 0
        self._coords: list[tuple[str, Any, int]] = []
        self._fidelity: Fidelity | None = None
        for name, dim in self.space.items():
            if isinstance(dim, Fidelity):
                self._fidelity = dim
            elif isinstance(dim, Categorical):
                self._coords.append((name, dim, len(dim)))
            elif isinstance(dim, Integer) and not dim.is_log and 2 <= dim.high - dim.low + 1 <= _MAX_DISCRETE:
                self._coords.append((name, dim, dim.high - dim.low + 1))
            else:
                self._coords.append((name, dim, 0))
        self._n_restarts = 0
        self._boundary = 0  # trials with a smaller id belong to a run before the last restart
        self._max_told = -1
        self._generation: list[tuple[np.ndarray, float]] = []
        # the centre, moved by a little: a mean exactly on the threshold between two values of a
        # discrete coordinate (0.5 for two values) breaks the margin correction (0 / 0)
        d = max(len(self._coords), 1)
        self._cma = self._new_cma(0.5 + self.rng_for(0, stream="cmaes-mean").uniform(-0.01, 0.01, d), popsize)

    @property
    def config(self) -> dict[str, Any]:
        """The options, as given (stored in the history's attrs)."""
        return {"sigma0": self.sigma0, "popsize": self.popsize, "restart": self.restart,
                "inc_popsize": self.inc_popsize}

    @property
    def n_restarts(self) -> int:
        """How many times the CMA was restarted so far."""
        return self._n_restarts

    def _new_cma(self, mean: np.ndarray, popsize: int | None) -> Any:
        from cmaes import CMAwM  # imported on first use, like the optimizer itself

        d = len(mean)
        steps = np.array([1.0 / (k - 1) if k >= 2 else 0.0 for _, _, k in self._coords] or [0.0])
        bounds = np.tile([0.0, 1.0], (d, 1))
        return CMAwM(mean=mean, sigma=self.sigma0, bounds=bounds, steps=steps, seed=self.seed % 2**31,
                     population_size=popsize)

    # -- the space as coordinates ------------------------------------------------------------
    def _decode(self, x: np.ndarray) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for (name, dim, k), u in zip(self._coords, x):
            u = min(max(float(u), 0.0), 1.0)
            if k >= 2:
                i = min(int(round(u * (k - 1))), k - 1)
                params[name] = dim.choices[i] if isinstance(dim, Categorical) else int(dim.low + i)
            else:
                params[name] = dim.from_unit(u)
        if self._fidelity is not None:
            params[self._fidelity.name] = self._fidelity.cast(self._fidelity.high)
        # in a conditional space: only the parameters the drawn choices activate
        return self.space.validate(params) if self.space.conditional else params

    def _encode(self, params: dict[str, Any]) -> np.ndarray | None:
        x = np.full(max(len(self._coords), 1), np.nan)
        try:
            for j, (name, dim, k) in enumerate(self._coords):
                if name not in params:
                    continue  # inactive: NaN, filled with the mean when told
                value = params[name]
                if isinstance(dim, Categorical):
                    x[j] = dim.index(value) / (k - 1) if k >= 2 else 0.5
                elif k >= 2:
                    x[j] = (int(value) - dim.low) / (k - 1)
                else:
                    x[j] = dim.to_unit(value)
        except (KeyError, ValueError, TypeError, OverflowError):
            return None
        if np.isinf(x).any():
            return None
        return np.clip(x, 0.0, 1.0)

    # -- the protocol ------------------------------------------------------------------------
    def ask(self, trial_id: int) -> Suggestion:
        """A draw from the current distribution, seeded by ``trial_id``."""
        seed = int(self.rng_for(trial_id).integers(2**32))
        self._cma._cma._rng = np.random.RandomState(seed)  # draws depend on the trial only
        x_eval, _ = self._cma.ask()
        self._pending.add(trial_id)
        return Suggestion(self._decode(x_eval))

    def tell(self, trial: Trial) -> None:
        """Collect a completed trial; tell the CMA a generation once ``popsize`` have arrived."""
        self._pending.pop(trial.id, None)
        self._max_told = max(self._max_told, int(trial.id))
        if not trial.ok or trial.id < self._boundary:
            return
        x = self._encode(dict(trial.params))
        if x is None:
            logger.warning("cmaes: trial %s has parameters outside the space; ignored", trial.id)
            return
        self._generation.append((x, float(trial.objective)))
        if len(self._generation) < self._cma.population_size:
            return
        mean = self._cma.mean
        solutions = [(np.where(np.isnan(x), mean, x), value) for x, value in self._generation]
        self._generation = []
        self._cma.tell(solutions)
        if self.restart == "ipop" and self._cma.should_stop():
            self._restart()

    def _restart(self) -> None:
        self._n_restarts += 1
        popsize = self._cma.population_size * self.inc_popsize
        mean = self.rng_for(self._n_restarts, stream="cmaes-restart").uniform(0.2, 0.8, self._cma.dim)
        logger.info("cmaes: restart %d with population %d", self._n_restarts, popsize)
        self._cma = self._new_cma(mean, popsize)
        self._boundary = self._max_told + 1
