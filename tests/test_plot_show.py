"""Plots show themselves, save themselves and display inline in Jupyter (daskhpo/plot.py)."""

from __future__ import annotations

import os

import bokeh.io
import pytest
from bokeh.models import LayoutDOM

from daskhpo import plot
from tests.helpers_plot import make_experiment


@pytest.fixture(scope="module")
def experiment():
    return make_experiment(30, broken_every=9)


@pytest.mark.parametrize("kind", ["regret", "parallel_coordinates", "importance", "timeline", "partial_dependencies"])
def test_every_plot_shows_saves_and_displays(experiment, kind, tmp_path, monkeypatch):
    kwargs = {"partial_dependencies": {"params": ["x", "lr"], "n_grid": 5}, "importance": {"method": "variance"}}
    obj = getattr(experiment.plot, kind)(**kwargs.get(kind, {}))
    assert isinstance(obj, LayoutDOM)  # still the Bokeh object
    out = obj.save(tmp_path / f"{kind}.html")
    assert "Bokeh" in open(out, encoding="utf-8").read()
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)
    path = obj.show()
    assert opened == [f"file://{path}"] and "Bokeh" in open(path, encoding="utf-8").read()
    os.remove(path)
    bundle = obj._repr_mimebundle_()
    assert bundle["text/html"].startswith("<iframe srcdoc=") and "bokeh" in bundle["text/html"].lower()
    # bokeh's own functions take it as before
    bokeh.io.save(obj, tmp_path / f"{kind}-bokeh.html", resources="inline", title=kind)


def test_ipython_displays_the_plot_not_bokehs_model_table(experiment):
    formatters = pytest.importorskip("IPython.core.formatters")
    data, _ = formatters.DisplayFormatter().format(plot.regret(experiment.history))
    assert data["text/html"].startswith("<iframe") and "daskhpo plot" in data["text/plain"]
