"""The documentation site builds without warnings, and its Python examples run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), "BROWSER": "true"}

# Every ```python block of a page runs, in order, as one script (```{code-block} python blocks
# are shown only: they need a Slurm cluster or your own training code).  The prelude makes an
# in-process cluster the current Dask client, which workon and SearchCV then use.
PRELUDE = """\
from distributed import Client, LocalCluster
_cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None)
_client = Client(_cluster)
"""
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
PAGES = sorted(p.name for p in DOCS.glob("*.md") if FENCE.search(p.read_text()))


def test_site_builds_with_warnings_as_errors(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    pytest.importorskip("numpydoc")
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(tmp_path / "html")],
        env=ENV, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    api = (tmp_path / "html" / "api.html").read_text()
    assert "max_trials" in api and "SearchCV" in api and "report_results" in api  # numpydoc API reference
    for page in ("getting-started", "cli", "sklearn", "progress", "slurm", "reporting"):
        assert (tmp_path / "html" / f"{page}.html").exists()


def test_pages_with_examples():
    assert {"getting-started.md", "sklearn.md", "progress.md", "reporting.md", "joblib.md"} <= set(PAGES)


@pytest.mark.parametrize("page", PAGES)
def test_code_examples_run(page, tmp_path):
    blocks = FENCE.findall((DOCS / page).read_text())
    script = tmp_path / "example.py"
    script.write_text(PRELUDE + "\n".join(blocks))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env={**ENV, "TMPDIR": str(tmp_path)},
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"{page}:\n{done.stderr[-4000:]}"
