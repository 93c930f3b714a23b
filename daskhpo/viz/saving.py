"""Writing a plot to a file: standalone HTML, or PNG/SVG through :mod:`daskhpo.viz.export`."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bokeh.model import Model

# the logger of the public entry point, daskhpo.viz.plot, as before the split
logger = logging.getLogger("daskhpo.viz.plot")


def save_html(obj: Model, path: str | os.PathLike, *, title: str = "daskhpo", resources: str = "inline") -> str:
    """Write a plot to a standalone HTML file.

    Parameters
    ----------
    obj : bokeh model
        What a plot function returned.
    path : path
    title : str
    resources : {"inline", "cdn"}, default "inline"
        ``"inline"`` embeds BokehJS, so the file opens without network access;
        ``"cdn"`` makes a small file that loads BokehJS from the Bokeh CDN.

    Returns
    -------
    str
        The path written.
    """
    from bokeh.embed import file_html
    from bokeh.resources import CDN, INLINE

    if resources not in ("inline", "cdn"):
        raise ValueError(f"resources must be 'inline' or 'cdn', got {resources!r}")
    html = file_html(obj, INLINE if resources == "inline" else CDN, title)
    path = os.fspath(path)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(html)
    logger.info("wrote %s", path)
    return path


def save(obj: Model, path: str | os.PathLike, **kwargs: Any) -> str:
    """Write a plot to a file, of the kind its suffix says.

    ``.html``/``.htm``: a standalone page (:func:`save_html`; nothing to install).
    ``.png``/``.svg``: an image drawn by a headless browser
    (:func:`daskhpo.viz.export.save_image`; needs ``pip install playwright`` and
    ``python -m playwright install chromium``, or a Chromium already installed).

    Parameters
    ----------
    obj : bokeh model
    path : path
    **kwargs
        Passed to :func:`save_html` (``title``, ``resources``) or
        :func:`~daskhpo.viz.export.save_image` (``scale``, ``timeout``).

    Returns
    -------
    str
        The path written.

    Raises
    ------
    ValueError
        For another suffix (nothing is written).
    daskhpo.viz.export.ImageExportUnavailable
        For an image without a browser to draw it (the message says how to get one).
    """
    from .export import IMAGE_FORMATS, save_image

    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix in (".html", ".htm"):
        return save_html(obj, path, **kwargs)
    if suffix in IMAGE_FORMATS:
        return save_image(obj, path, **kwargs)
    raise ValueError(f"path: save writes .html, .png or .svg files, got {os.fspath(path)!r}")
