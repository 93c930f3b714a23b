"""Plots show themselves, save themselves and display inline in Jupyter (daskhpo/plot.py)."""

from __future__ import annotations

import os
import shutil

import bokeh.io
import pytest
from bokeh.models import LayoutDOM, Plot

from daskhpo.viz import plot
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
    monkeypatch.setenv("DISPLAY", ":0")  # a desktop session: the browser is asked
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


# -- images and places without a browser ---------------------------------------------------------


@pytest.fixture(scope="module")
def image_export():
    """Playwright and a Chromium (its own, or the system's as save() finds it); CI must have them."""
    from tests.helpers_browser import _unavailable

    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright)")
    from daskhpo.viz.export import _SYSTEM_BROWSERS

    if not (os.environ.get("DASKHPO_CHROMIUM") or any(shutil.which(b) for b in _SYSTEM_BROWSERS)
            or os.path.isdir(os.path.expanduser("~/.cache/ms-playwright"))):
        _unavailable("no Chromium (python -m playwright install chromium)")


def test_save_png_and_svg_write_images_not_html(experiment, tmp_path, image_export):
    obj = experiment.plot.regret()
    png = obj.save(tmp_path / "regret.png")
    data = open(png, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (960, 320)  # the two 480 x 320 panels, nothing else of the page
    pc = experiment.plot.parallel_coordinates()
    svg = experiment.plot.save(pc, str(tmp_path / "pc.svg"))
    text = open(svg, encoding="utf-8").read()
    assert text.startswith("<svg") and "</svg>" in text and "<html" not in text and text.count("<path") > 10
    # the plot keeps drawing on a canvas afterwards
    assert {p.output_backend for p in pc.select({"type": Plot})} == {"canvas"}


def test_an_image_without_a_browser_says_how_to_get_one(experiment, tmp_path, monkeypatch):
    import sys

    from daskhpo.viz.export import ImageExportUnavailable

    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)  # not installed
    with pytest.raises(ImageExportUnavailable, match=r"pip install playwright && python -m playwright install chromium"):
        experiment.plot.regret().save(tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(ValueError, match=r"save writes .html, .png or .svg files, got .*x.pdf"):
        experiment.plot.regret().save(tmp_path / "x.pdf")


def test_show_without_a_display_or_browser_says_where_the_page_is(experiment, monkeypatch, caplog):
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or False)  # no browser found
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    with caplog.at_level("WARNING", logger="daskhpo.viz.plot"):
        path = experiment.plot.regret().show()
    assert opened == [] and path in caplog.text and "no display" in caplog.text
    os.remove(path)
    caplog.clear()
    monkeypatch.setenv("DISPLAY", ":0")
    with caplog.at_level("WARNING", logger="daskhpo.viz.plot"):
        path = experiment.plot.regret().show()
    assert opened == [f"file://{path}"] and f"no web browser found to open the plot: it is in {path}" in caplog.text
    os.remove(path)
