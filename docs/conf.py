"""Sphinx configuration of the daskhpo documentation (``sphinx-build -W docs docs/_build``)."""

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
