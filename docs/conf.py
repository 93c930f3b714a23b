"""Sphinx configuration of the daskhpo documentation (``sphinx-build -W docs docs/_build``)."""

import glob
import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import daskhpo  # noqa: E402

project = "daskhpo"
author = "the daskhpo authors"
release = version = daskhpo.__version__
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.intersphinx", "numpydoc"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3
html_theme = "alabaster"
html_title = f"daskhpo {release}"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
autodoc_typehints = "none"
autodoc_member_order = "bysource"
intersphinx_mapping = {}  # no network while building
suppress_warnings = ["myst.xref_missing"]


# -- the benchmark results -------------------------------------------------------------------
# The pages link to ../benchmarks/results/NAME.md, the files in the repository (so the links
# work on GitHub and in a checkout).  Those files lie outside this source directory, so the
# build copies them into benchmark-results/ (generated, not committed) and points the links
# there as it reads each page.
_HERE = os.path.dirname(os.path.abspath(__file__))
_RESULTS = os.path.join(_HERE, "..", "benchmarks", "results")
_COPIES = "benchmark-results"


def _copy_results() -> None:
    out = os.path.join(_HERE, _COPIES)
    os.makedirs(out, exist_ok=True)
    for path in sorted(glob.glob(os.path.join(_RESULTS, "*.md"))):
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        # orphan: reached by the links of the pages, not listed in a table of contents
        with open(os.path.join(out, os.path.basename(path)), "w", encoding="utf-8") as fh:
            fh.write("---\norphan: true\n---\n\n" + text)


def _link_results(app, docname, source) -> None:
    source[0] = source[0].replace("](../benchmarks/results/", f"]({_COPIES}/")


_copy_results()


def setup(app):
    app.connect("source-read", _link_results)
