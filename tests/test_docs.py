"""The documentation site builds without warnings, and every code block runs as users run it.

How the blocks of ``README.md`` and ``docs/*.md`` are run
-------------------------------------------------------
Each fenced ```` ```python ```` block is a program a reader pastes into a file and runs: the
test writes it to ``block.py`` in a fresh temporary directory and runs ``python block.py``
in a subprocess, with no prelude, no main guard added and no Dask client made for it, so
that ``workon`` starts its implicit cluster exactly as it does for a user.  Only
``PYTHONPATH`` (this checkout) and ``TMPDIR`` (the temporary directory) are set.

A block that goes on from the one before it (it uses its names, as the next cell of a
notebook would) says so with ``<!-- continues -->`` on the line before its fence: it runs
appended to the script of the previous block, as one script, in page order.  Every other
block runs alone.

A block not meant to run is marked with ``<!-- not-run: REASON -->`` on the line before its
fence: shell sessions, output shown, Slurm-only code, and fragments that use the reader's
own code.  Every fenced block of another language must carry the mark too (Sphinx
directives such as ``{toctree}`` and ``{eval-rst}`` are markup, not code), so that no block
is left out silently: ``test_every_block_runs_or_says_why_not`` fails on one that does not,
and ``test_report_blocks_run_and_skipped`` prints how many ran and were skipped, and why.

The scripts run in parallel, a few at a time (``DOCS_JOBS``, default 3): on first use, the
module's fixture starts every selected block's script at once in a small thread pool, and
each parametrized test waits for its own.

Pages run in a Jupyter kernel too
---------------------------------
A page whose readers typically work in a notebook says so with a line ``<!-- notebook -->``
(or ``<!-- notebook: a note -->``; conventionally under its title; an HTML comment, never
shown on the site).  Its runnable
blocks then *also* run as the cells of one notebook, in page order, in one fresh IPython
kernel (``ipykernel``, driven by ``nbclient``; the notebook is built in memory with
``nbformat``) whose working directory is a fresh temporary directory:
``test_notebook_page_runs_in_a_kernel``.  That is where a kernel differs from a script: an
event loop already runs, ``__main__`` is no file (functions and classes of cells travel by
value, with cloudpickle; worker processes import nothing of it), ``display`` shows rich
output, tqdm draws a widget, and every cell shares the names (and storage files) of the cells
before it.  A cell fails the test if it raises, or if its output shows a traceback or a
Python warning.  Each cell
may take ``CELL_TIMEOUT`` seconds.  Marked: the pages a new user runs in a notebook first
(getting started: the Quick start and the cluster choices), progress (the bar and inline
display are what differ there), scikit-learn (``SearchCV`` is mostly used from notebooks) and
reporting (checkpoints of classes defined in a cell).
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), "BROWSER": "true"}
#: seconds a block's script may take (below pytest-timeout's 300; each uses small budgets)
TIMEOUT = 240
JOBS = int(os.environ.get("DOCS_JOBS", "3"))

FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<code>.*?)^```[ \t]*$", re.S | re.M)
MARK = re.compile(r"<!--\s*(?P<kind>not-run|continues)\s*(?::\s*(?P<reason>.*?))?\s*-->\s*\Z", re.S)
NOTEBOOK = re.compile(r"^<!--\s*notebook\s*(?::[^>]*)?-->[ \t]*$", re.M)
#: a Python warning as ``warnings`` shows it (``file.py:12: SomeWarning: ...``)
WARNING = re.compile(r":\d+: \w*Warning: ")
#: seconds one notebook cell may take
CELL_TIMEOUT = 180
DIRECTIVES = ("{toctree}", "{eval-rst}")


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    info: str
    code: str
    mark: str | None  # "not-run", "continues" or None
    reason: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    """The fenced blocks of a page with the mark on the line before each."""
    text = path.read_text()
    page = str(path.relative_to(ROOT))
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = MARK.search(before)
        found.append(Block(page, text.count("\n", 0, match.start()) + 1, match["info"].strip(), match["code"],
                           mark["kind"] if mark else None, (mark["reason"] or "") if mark else ""))
    return found


ALL_BLOCKS = [b for page in PAGES for b in blocks_of(page) if b.info not in DIRECTIVES]
RUN = [b for b in ALL_BLOCKS if b.mark != "not-run" and b.info == "python"]


def scripts() -> dict[str, str]:
    """Block id -> the script that runs it: the block, after the blocks it continues."""
    out: dict[str, str] = {}
    previous: Block | None = None
    for block in RUN:
        if block.mark == "continues":
            assert previous is not None and previous.page == block.page, f"{block.id}: continues no block"
            out[block.id] = out[previous.id] + "\n" + block.code
        else:
            out[block.id] = block.code
        previous = block
    return out


SCRIPTS = scripts()


def run_script(block_id: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="daskhpo-doc-") as tmp:
        Path(tmp, "block.py").write_text(SCRIPTS[block_id])
        try:
            return subprocess.run([sys.executable, "block.py"], cwd=tmp, env={**ENV, "TMPDIR": tmp},
                                  capture_output=True, text=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(exc.cmd, -1, exc.stdout or "", f"timed out after {TIMEOUT} s")


@pytest.fixture(scope="module")
def runs(request):
    """Block id -> a future of its run; every selected block starts at once, JOBS at a time."""
    wanted = [item.callspec.params["block_id"] for item in request.session.items
              if getattr(item, "originalname", None) == "test_block_runs_as_a_script"]
    with concurrent.futures.ThreadPoolExecutor(max_workers=JOBS) as pool:
        yield {block_id: pool.submit(run_script, block_id) for block_id in wanted}


#: an error Python ignored in a callback of another library while the interpreter shut down
#: (e.g. joblib's dask backend dropping a weak reference): noise a user may see, none of ours
_FOREIGN_UNRAISABLE = re.compile(
    r"^Exception ignored in: .*?\nTraceback \(most recent call last\):\n((?:  .*\n)+)\S.*(?:\n|$)", re.M)


def our_tracebacks(stderr: str) -> str:
    """``stderr`` without the ignored errors whose every frame lies outside daskhpo."""
    return _FOREIGN_UNRAISABLE.sub(lambda m: "" if "daskhpo" not in m.group(1) else m.group(0), stderr)


@pytest.mark.parametrize("block_id", list(SCRIPTS))
def test_block_runs_as_a_script(block_id, runs):
    done = runs[block_id].result()
    assert done.returncode == 0, f"{block_id}: python block.py exited {done.returncode}\n{done.stderr[-4000:]}"
    # a run that printed tracebacks of errors it survived (a worker's, a callback's) is no example
    assert "Traceback" not in our_tracebacks(done.stderr), f"{block_id}:\n{done.stderr[-4000:]}"


def test_only_foreign_ignored_errors_are_let_through():
    foreign = ("Exception ignored in: <function f at 0x1>\nTraceback (most recent call last):\n"
               '  File "/site-packages/joblib/_dask.py", line 84, in on_destroy\n    del self._data[key]\nKeyError: 1\n')
    ours = foreign.replace("/site-packages/joblib/_dask.py", "/src/daskhpo/engine/loop.py")
    assert "Traceback" not in our_tracebacks("ok\n" + foreign)
    assert "Traceback" in our_tracebacks(ours)
    assert "Traceback" in our_tracebacks("Traceback (most recent call last):\n  File \"x.py\"\nValueError\n")


def test_every_block_runs_or_says_why_not():
    unmarked = [b.id for b in ALL_BLOCKS if b.info != "python" and b.mark != "not-run"]
    assert not unmarked, f"blocks neither ```python nor marked <!-- not-run: reason -->: {unmarked}"
    unexplained = [b.id for b in ALL_BLOCKS if b.mark == "not-run" and not b.reason]
    assert not unexplained, f"<!-- not-run --> without a reason: {unexplained}"
    # the pages that teach the API run their examples (a page left unchecked by mistake shows here)
    pages_run = {b.page for b in RUN}
    assert {"README.md", "docs/getting-started.md", "docs/sklearn.md", "docs/progress.md", "docs/reporting.md",
            "docs/joblib.md", "docs/objectives.md", "docs/spaces.md", "docs/algorithms.md"} <= pages_run


def test_report_blocks_run_and_skipped(capsys):
    skipped = [b for b in ALL_BLOCKS if b.mark == "not-run"]
    reasons = collections.Counter(b.reason for b in skipped)
    with capsys.disabled():
        print(f"\ndocs code blocks: {len(RUN)} run as scripts ({len(SCRIPTS) - sum(b.mark == 'continues' for b in RUN)} "
              f"alone, {sum(b.mark == 'continues' for b in RUN)} continuing the block before), {len(skipped)} not run:")
        for reason, count in reasons.most_common():
            print(f"  {count} x {reason}")
    assert len(RUN) >= 20 and len(skipped) <= len(RUN)


NOTEBOOK_PAGES = [str(page.relative_to(ROOT)) for page in PAGES if NOTEBOOK.search(page.read_text())]


@pytest.mark.parametrize("page", NOTEBOOK_PAGES)
def test_notebook_page_runs_in_a_kernel(page, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    cells = [b for b in RUN if b.page == page]
    assert cells, f"{page} is marked <!-- notebook --> but has no block to run"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(b.code) for b in cells])
    for name, value in {**ENV, "TMPDIR": str(tmp_path)}.items():  # the kernel inherits this process's
        monkeypatch.setenv(name, value)
    client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        pytest.fail(f"{page}: a cell raised in the kernel:\n{str(exc)[-4000:]}")
    for block, cell in zip(cells, notebook.cells):
        shown = "".join(out.get("text", "") for out in cell.outputs if out.get("output_type") == "stream")
        shown += "".join("".join(out.get("traceback", [])) for out in cell.outputs)
        assert "Traceback" not in our_tracebacks(shown), f"{block.id} in a kernel:\n{shown[-4000:]}"
        assert not WARNING.search(shown), f"{block.id} in a kernel shows a warning:\n{shown[-4000:]}"


def test_notebook_pages_are_marked():
    assert {"docs/getting-started.md", "docs/progress.md", "docs/sklearn.md", "docs/reporting.md"} <= set(NOTEBOOK_PAGES)


def test_the_readme_quick_start_is_the_getting_started_one():
    readme = [b.code for b in blocks_of(ROOT / "README.md") if b.info == "python"][0]
    assert readme in [b.code for b in blocks_of(DOCS / "getting-started.md")]


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
    # the not-run marks are HTML comments: never shown on the site
    shown = re.sub(r"<!--.*?-->", "", (tmp_path / "html" / "slurm.html").read_text(), flags=re.S)
    assert "not-run" not in shown
