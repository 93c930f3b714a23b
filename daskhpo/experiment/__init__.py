"""Experiments: a space, an optimizer and a history, run on Dask by :meth:`Experiment.workon`.

* :mod:`~daskhpo.experiment.facade`: :class:`Experiment`, the object users hold;
* :mod:`~daskhpo.experiment.view`: its read API (history, records, best, trials, plots);
* :mod:`~daskhpo.experiment.run`: what lives only during a run;
* :mod:`~daskhpo.experiment.teller`: what the optimizer is told (direction, penalties);
* :mod:`~daskhpo.experiment.build` and :mod:`~daskhpo.experiment.resume`: creating,
  resuming, loading and warm starts.
"""

from .build import build_experiment, create_experiment, load_experiment
from .facade import Experiment
from .resume import WARM_START_ID
from .teller import DIRECTIONS, Teller, as_report, as_trial, check_direction

#: the teller's name before it had a module of its own
_Teller = Teller

__all__ = [
    "Experiment", "build_experiment", "create_experiment", "load_experiment",
    "WARM_START_ID", "DIRECTIONS", "Teller", "as_report", "as_trial", "check_direction",
]
