"""Links of README.md and docs/ lead somewhere: on GitHub (the repository's files) and in the
Sphinx build (docs/conf.py copies the benchmark results in and points their links there)."""

from __future__ import annotations

import glob
import os
import re
import runpy

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))) + [os.path.join(ROOT, "README.md")]
#: a Markdown link's target, outside code spans
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _relative_links(path: str) -> list[str]:
    text = open(path, encoding="utf-8").read()
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z]+:|^#", t)]


@pytest.mark.parametrize("page", PAGES, ids=[os.path.relpath(p, ROOT) for p in PAGES])
def test_relative_links_name_files_that_exist(page):
    missing = [t for t in _relative_links(page)
               if not os.path.exists(os.path.join(os.path.dirname(page), t.split("#")[0]))]
    assert missing == []


def test_benchmark_results_links_resolve_in_the_sphinx_build():
    conf = runpy.run_path(os.path.join(ROOT, "docs", "conf.py"))  # copies the results in
    pages = [p for p in PAGES if os.path.dirname(p).endswith("docs")]
    linked = {t for p in pages for t in _relative_links(p) if "benchmarks/results/" in t}
    assert len(linked) >= 8  # every results page is linked from the docs
    for target in linked:
        source = [f"see [x]({target})"]
        conf["_link_results"](None, "page", source)
        rewritten = re.search(r"\]\(([^)]+)\)", source[0])[1].split("#")[0]
        assert os.path.isfile(os.path.join(ROOT, "docs", rewritten)), target
        assert open(os.path.join(ROOT, "docs", rewritten), encoding="utf-8").read().startswith("---\norphan: true")
