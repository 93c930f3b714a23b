"""Experiments: a space, an optimizer and a history, run on Dask by :meth:`Experiment.workon`."""

from .facade import *  # noqa: F401,F403
from .facade import WARM_START_ID, as_report, as_trial, check_direction  # noqa: F401
