"""Plots of an experiment's history, as Bokeh objects.

Every function takes the history (an :class:`xarray.Dataset` as returned by
``experiment.history``, or an :class:`~daskhpo.Experiment`) and returns a Bokeh layout
that can be shown (:func:`bokeh.io.show`), embedded, or written to a standalone HTML file
with :func:`save_html`.  The same functions are reachable from an experiment, live or
loaded::

    experiment.plot.regret()
    daskhpo.load_experiment("exp.nc").plot.partial_dependencies(n_grid=30)

Sources and renderers carry names (``"trials"``, ``"best"``, ...) so that the data behind
a plot can be found with ``layout.select(name=...)``.

Conventions: only *completed* trials (finite objective) enter the objective plots; the
objective is minimized; parameters with a log prior (``loguniform``, ``fidelity``) are
drawn on log axes, categorical ones on axes labelled with their choices.

This module is the public entry point; the figures are drawn in ``objective_plots`` (regret,
Pareto front), ``surrogate_plots`` (partial dependencies, importance) and ``trial_plots``
(parallel coordinates, timeline, intermediate results) from the history as ``reading`` and
``param_axes`` read it, and written to files by ``saving``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._notebook import in_notebook

# The plots and what users call, by concern; the building blocks that are not user API (kept out
# of __all__) are re-exported too (`name as name`), as the dashboard and the CLI reach them here.
from .objective_plots import LOG_AXIS_SPAN as LOG_AXIS_SPAN
from .objective_plots import pareto, regret
from .objective_plots import pareto_columns as pareto_columns
from .objective_plots import pareto_figure as pareto_figure
from .objective_plots import regret_figure as regret_figure
from .objective_plots import set_log_y as set_log_y
from .objective_plots import wants_log_axis as wants_log_axis
from .reading import STATUS_COLORS
from .reading import best_so_far as best_so_far
from .reading import direction as direction
from .reading import is_log as is_log
from .reading import label as label
from .reading import status_color as status_color
from .saving import save, save_html
from .surrogate_plots import importance, partial_dependencies
from .trial_plots import intermediate, parallel_coordinates, timeline
from .trial_plots import objective_ticks as objective_ticks
from .trial_plots import parcoords_figure as parcoords_figure
from .trial_plots import parcoords_labels as parcoords_labels
from .trial_plots import parcoords_row as parcoords_row
from .trial_plots import timeline_columns as timeline_columns
from .trial_plots import timeline_figure as timeline_figure

if TYPE_CHECKING:
    from bokeh.model import Model

    from ..experiment import Experiment

__all__ = [
    "PlotAccessor",
    "regret",
    "partial_dependencies",
    "parallel_coordinates",
    "importance",
    "timeline",
    "intermediate",
    "pareto",
    "save_html",
    "STATUS_COLORS",
]

logger = logging.getLogger(__name__)


# -- the accessor ------------------------------------------------------------------------------


class PlotAccessor:
    """``experiment.plot.<kind>(...)``: the plots of :mod:`daskhpo.viz.plot` for one experiment.

    Each method takes the keyword arguments of the function of the same name, without the
    history, and returns a Bokeh object.  ``save(obj, path)`` writes one to HTML, PNG or SVG
    (see :func:`save`).
    """

    def __init__(self, experiment: Experiment) -> None:
        self._experiment = experiment

    def __repr__(self) -> str:
        return f"<PlotAccessor of {self._experiment!r}: regret, partial_dependencies, parallel_coordinates, importance, timeline, intermediate, pareto>"

    def regret(self, **kwargs: Any) -> Any:
        """See :func:`daskhpo.viz.plot.regret`."""
        return regret(self._experiment, **kwargs)

    def partial_dependencies(self, params: Sequence[str] | None = None, n_grid: int = 20, **kwargs: Any) -> Any:
        """See :func:`daskhpo.viz.plot.partial_dependencies`."""
        return partial_dependencies(self._experiment, params, n_grid, **kwargs)

    def parallel_coordinates(self, **kwargs: Any) -> Any:
        """See :func:`daskhpo.viz.plot.parallel_coordinates`."""
        return parallel_coordinates(self._experiment, **kwargs)

    def importance(self, method: str = "permutation", **kwargs: Any) -> Any:
        """See :func:`daskhpo.viz.plot.importance`."""
        return importance(self._experiment, method, **kwargs)

    def timeline(self, **kwargs: Any) -> Any:
        """See :func:`daskhpo.viz.plot.timeline`."""
        return timeline(self._experiment, **kwargs)

    def intermediate(self, metric: str = "objective", **kwargs: Any) -> Any:
        """See :func:`daskhpo.viz.plot.intermediate`."""
        return intermediate(self._experiment, metric, **kwargs)

    def pareto(self, **kwargs: Any) -> Any:
        """See :func:`daskhpo.viz.plot.pareto`."""
        return pareto(self._experiment, **kwargs)

    @staticmethod
    def save(obj: Model, path: str | os.PathLike, **kwargs: Any) -> str:
        """See :func:`daskhpo.viz.plot.save` (HTML, PNG or SVG by the path's suffix)."""
        return save(obj, path, **kwargs)


# -- showing: .show(), .save(path) and inline display in Jupyter --------------------------------

#: BokehJS for inline notebook display: "cdn" (small outputs; the browser loads BokehJS from
#: cdn.bokeh.org) or "inline" (works offline; about 1.5 MB per displayed plot)
NOTEBOOK_RESOURCES = "cdn"


def _no_display() -> bool:
    """Linux or BSD without X11 or Wayland (a login node, ssh without -X): no browser window."""
    import sys

    if sys.platform.startswith(("win", "darwin", "cygwin")):
        return False
    return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _show(self: Any) -> str | None:
    """Display the plot: inline in a notebook, else in a web browser (from a temporary HTML file).

    Without a display or a browser to open, a warning (logged) says where the page is.
    Returns the path of the HTML file written, or ``None`` in a notebook.
    """
    if in_notebook():
        from IPython.display import display  # type: ignore[import-not-found]

        display(self)
        return None
    import tempfile
    import webbrowser

    fd, path = tempfile.mkstemp(prefix="daskhpo-", suffix=".html")
    os.close(fd)
    save_html(self, path)
    path = os.path.abspath(path)
    if _no_display():
        # a console browser (w3m, lynx) would take the terminal over: say where the page is
        logger.warning("no display to open a browser on: the plot is in %s (copy it to your machine, "
                       "or .save('plot.png') for an image)", path)
    elif not webbrowser.open("file://" + path):
        logger.warning("no web browser found to open the plot: it is in %s", path)
    return path


def _save(self: Any, path: str | os.PathLike, **kwargs: Any) -> str:
    """Write the plot to HTML, PNG or SVG, by the path's suffix (see :func:`save`); returns the path."""
    return save(self, path, **kwargs)


def _repr_mimebundle_(self: Any, include: Any = None, exclude: Any = None) -> dict[str, str]:
    """Jupyter's rich display: the plot in an ``<iframe>`` (no ``output_notebook()`` needed)."""
    import html

    from bokeh.embed import file_html
    from bokeh.resources import CDN, INLINE

    page = file_html(self, INLINE if NOTEBOOK_RESOURCES == "inline" else CDN, "daskhpo")
    width = (getattr(self, "width", None) or 900) + 40
    height = (getattr(self, "height", None) or 420) + 40
    frame = (
        f'<iframe srcdoc="{html.escape(page, quote=True)}" style="border:none" '
        f'width="{width}" height="{height}" sandbox="allow-scripts"></iframe>'
    )
    return {"text/html": frame, "text/plain": f"<daskhpo plot {type(self).__name__}: .show(), .save(path)>"}


def displayable(obj: Any) -> Any:
    """Give a Bokeh object ``.show()``, ``.save(path)`` and inline display in Jupyter.

    The object stays the same Bokeh object (``bokeh.io.show(obj)``, embedding and
    ``select`` work as before); the three methods are set on this instance only.
    """
    import types

    for name, method in (("show", _show), ("save", _save), ("_repr_mimebundle_", _repr_mimebundle_)):
        # Bokeh models refuse unknown attributes through their __setattr__; these are not
        # properties (never serialized), only methods of this Python object.
        object.__setattr__(obj, name, types.MethodType(method, obj))
    return obj


def _displayable_result(fn: Any) -> Any:
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return displayable(fn(*args, **kwargs))

    # the wrapper is what users reach as daskhpo.viz.plot.<name>: say so, so that pickling it
    # by reference, help() and the API docs find it here (the plain function lives elsewhere)
    wrapper.__module__ = __name__
    return wrapper


# The plot functions users call: the figures of the modules above, given .show(), .save(path)
# and inline display in Jupyter.
regret = _displayable_result(regret)
partial_dependencies = _displayable_result(partial_dependencies)
parallel_coordinates = _displayable_result(parallel_coordinates)
importance = _displayable_result(importance)
timeline = _displayable_result(timeline)
intermediate = _displayable_result(intermediate)
pareto = _displayable_result(pareto)
