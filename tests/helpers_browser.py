"""Driving Debian's Chromium with Playwright (see the README; no browser download).

Browser tests skip where Chromium or Playwright is missing, except in CI (``CI=true``),
where they fail instead: there they must run.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator

import pytest

CHROMIUM = os.environ.get("DASKHPO_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests must run in CI: {reason}")
    pytest.skip(reason)


def launch_browser() -> Iterator:
    """Yield a headless Chromium (Playwright ``Browser``); closes it afterwards."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright)")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Page:
    """A page that records JavaScript errors (uncaught ones and console errors)."""

    def __init__(self, browser, width: int = 1300, height: int = 1200) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.on("console", lambda msg: msg.type == "error" and self.errors.append(f"console: {msg.text}"))

    def open(self, url: str, timeout: float = 30.0) -> float:
        """Load ``url`` and wait until Bokeh has drawn a canvas; returns the seconds it took."""
        start = time.perf_counter()
        self.page.goto(url, timeout=timeout * 1e3)
        self.page.wait_for_selector("canvas", timeout=timeout * 1e3)
        return time.perf_counter() - start

    def model_length(self, name: str, column: str = "trial") -> int:
        """Rows of the named ColumnDataSource as the browser holds it."""
        return self.page.evaluate(
            "([name, column]) => Bokeh.documents[0].get_model_by_name(name).data[column].length", [name, column]
        )

    def wait_for_length(self, name: str, n: int, timeout: float = 10.0, column: str = "trial") -> float:
        """Wait until the named source holds at least ``n`` rows; returns the seconds waited."""
        start = time.perf_counter()
        self.page.wait_for_function(
            "([name, column, n]) => { const m = window.Bokeh && Bokeh.documents.length"
            " && Bokeh.documents[0].get_model_by_name(name); return m && m.data[column].length >= n }",
            arg=[name, column, n],
            timeout=timeout * 1e3,
            polling=50,
        )
        return time.perf_counter() - start

    def settle(self) -> None:
        """Wait until the browser has painted twice (pending renders are done)."""
        self.page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")

    def drawn_column(self, renderer: str, column: str) -> list:
        """A glyph's column as the browser draws it (after transforms), as a list of lists."""
        return self.page.evaluate(
            """([name, column]) => {
              const view = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name(name))
              const values = view.glyph[column]
              const out = []
              for (let i = 0; i < values.length; i++) out.push(Array.from(values.get ? values.get(i) : values[i]))
              return out
            }""",
            [renderer, column],
        )

    def text(self, selector: str) -> str:
        return self.page.locator(selector).inner_text()

    def close(self) -> None:
        self.context.close()
