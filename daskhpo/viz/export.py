"""Plots as PNG and SVG images, drawn by a headless browser.

Bokeh draws in the browser, so an image of a plot needs one.  Bokeh's own ``export_png``
needs Selenium *and* a matching driver binary (chromedriver or geckodriver); daskhpo uses
`Playwright <https://playwright.dev/python/>`_ instead, which pip installs with its browser:

.. code-block:: bash

    pip install playwright
    python -m playwright install chromium      # or: install-deps too, on a bare Linux

A Chromium or Chrome already installed is used when Playwright's own is not there (the
``DASKHPO_CHROMIUM`` environment variable, else ``chromium``, ``chromium-browser``,
``google-chrome`` on ``PATH``).  Without either, :func:`save_image` raises
:class:`ImageExportUnavailable` saying so; HTML (``save("x.html")``) needs nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any

__all__ = ["save_image", "ImageExportUnavailable", "IMAGE_FORMATS"]

logger = logging.getLogger(__name__)

#: file name suffixes saved as images
IMAGE_FORMATS = (".png", ".svg")

HOW_TO_GET_A_BROWSER = (
    "pip install playwright && python -m playwright install chromium "
    "(or set DASKHPO_CHROMIUM to a Chromium/Chrome executable); or save to .html instead"
)

_SYSTEM_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]

#: resolves once Bokeh has rendered the document (the test of bokeh.io.export)
_IDLE = "() => window.Bokeh !== undefined && Bokeh.documents.length > 0 && Bokeh.documents[0].is_idle"

_ROOT_VIEW = """
(id) => {
  for (const view of Bokeh.index) {
    if (view.model.id === id) return view
  }
  return null
}
"""
_BOUNDS = f"(id) => {{ const view = ({_ROOT_VIEW})(id); const r = view.el.getBoundingClientRect();"\
          " return {x: r.left, y: r.top, width: r.width, height: r.height} }"
_SVG = f"(id) => {{ const view = ({_ROOT_VIEW})(id); return view.export('svg').ctx.get_serialized_svg(true) }}"


class ImageExportUnavailable(RuntimeError):
    """No headless browser to draw a plot as an image; the message says how to get one."""


def _launch(playwright: Any) -> Any:
    """A headless Chromium: the given one, Playwright's own, or one installed on the system."""
    explicit = os.environ.get("DASKHPO_CHROMIUM")
    candidates: list[str | None] = [explicit] if explicit else [None]  # None: Playwright's own browser
    if not explicit:
        candidates += [found for found in (shutil.which(b) for b in _SYSTEM_BROWSERS) if found]
    errors = []
    for path in candidates:
        try:
            return playwright.chromium.launch(executable_path=path, args=_ARGS) if path else playwright.chromium.launch(args=_ARGS)
        except Exception as exc:  # noqa: BLE001 - a missing browser raises playwright's Error
            errors.append(f"{path or 'playwright chromium'}: {str(exc).splitlines()[0]}")
    raise ImageExportUnavailable(f"no headless browser could start ({'; '.join(errors)}): {HOW_TO_GET_A_BROWSER}")


def save_image(obj: Any, path: str | os.PathLike, *, scale: float = 1.0, timeout: float = 30.0) -> str:
    """Write a Bokeh plot or layout to a PNG or SVG file.

    Parameters
    ----------
    obj : bokeh model
        What a plot function returned.
    path : path
        Ends in ``.png`` or ``.svg``.
    scale : float, default 1
        Pixels per CSS pixel of a PNG (2 for a sharper image on high-density screens).
    timeout : float, default 30
        Seconds to wait for the browser to draw the plot.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    ValueError
        For another suffix.
    ImageExportUnavailable
        Without Playwright or a browser it can start (the message says how to get them).
    """
    from bokeh.embed import file_html
    from bokeh.models import Plot
    from bokeh.resources import INLINE

    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in IMAGE_FORMATS:
        raise ValueError(f"path: an image is saved as {' or '.join(IMAGE_FORMATS)}, got {path!r}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise ImageExportUnavailable(f"saving {path!r} needs a headless browser: {HOW_TO_GET_A_BROWSER}") from None

    plots = list(obj.select({"type": Plot})) if hasattr(obj, "select") else []
    backends = [p.output_backend for p in plots]
    if suffix == ".svg":  # Bokeh draws SVG only for plots told to
        for p in plots:
            p.output_backend = "svg"
    try:
        page_html = file_html(obj, INLINE, "daskhpo", suppress_callback_warning=True)
    finally:
        for p, backend in zip(plots, backends):
            p.output_backend = backend
    with sync_playwright() as playwright:
        browser = _launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 2400, "height": 2400}, device_scale_factor=scale)
            page.set_content(page_html, timeout=timeout * 1e3)
            page.wait_for_function(_IDLE, timeout=timeout * 1e3, polling=50)
            if suffix == ".svg":
                svg = page.evaluate(_SVG, obj.id)
                with open(path, "w", encoding="utf-8") as fh:
                    fh.write(svg)
            else:
                box = page.evaluate(_BOUNDS, obj.id)
                page.screenshot(path=path, clip=box, timeout=timeout * 1e3)
        finally:
            browser.close()
    logger.info("wrote %s", path)
    return path
