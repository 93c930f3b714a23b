"""Random search: independent draws from the priors."""

from __future__ import annotations

from .base import Optimizer, Suggestion, Trial


class RandomSearch(Optimizer):
    """Draw every configuration independently from the space's priors.

    Each trial's draw depends only on the seed and the trial id, so a resumed run
    continues the sequence instead of repeating it, and parallel suggestions need no
    bookkeeping of pending trials.
    """

    name = "random"
    multi_objective = True  # it reads no objective at all

    def ask(self, trial_id: int) -> Suggestion:
        """A draw from the priors that depends only on the seed and ``trial_id``."""
        return Suggestion(self.space.sample(self.rng_for(trial_id)))

    def tell(self, trial: Trial) -> None:
        """Random search learns nothing from results."""
