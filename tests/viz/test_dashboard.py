"""The live dashboard, driven in a real Chromium (Playwright), on real Dask clusters."""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

import daskhpo
from daskhpo.viz.dashboard import FileFollower, TrialFeed, serve_history
from tests.helpers_browser import Page, launch_browser
from tests.helpers_plot import make_experiment, make_records

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def browser():
    yield from launch_browser()


def _feed(experiment, records):
    """What the engine does with each finished trial: on disk, then to the subscribers."""
    for record in records:
        experiment._history.append(record)
        for subscriber in experiment.subscribers:
            subscriber(record)


def test_dashboard_of_an_experiment_shows_its_trials(browser, tmp_path):
    experiment = make_experiment(40, broken_every=8)
    board = experiment.dashboard()
    page = Page(browser)
    try:
        assert board.url.startswith("http://localhost:") and board.running
        assert experiment.dashboard() is board  # one per experiment
        seconds = page.open(board.url)
        assert page.text(".daskhpo-ntrials") == "40"
        assert page.text(".daskhpo-count-completed") == "completed: 35"
        assert page.text(".daskhpo-count-broken") == "broken: 5"
        assert page.text(".daskhpo-best") == f"{experiment.best['objective']:.6g}"
        assert page.model_length("trials_table") == 40
        assert page.model_length("lines") == 35  # parallel coordinates: completed trials
        assert page.model_length("bars") == 40  # timeline: every trial
        assert page.page.locator("canvas").count() >= 3
        shot = tmp_path / "dashboard.png"
        page.page.screenshot(path=str(shot), full_page=True)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
        assert page.errors == []
        print(f"\npage load (40 trials): {seconds:.2f} s")
    finally:
        page.close()
        board.stop()
    assert not board.running
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(board.url, timeout=2)
    assert experiment.subscribers == []  # stop() detaches it from the experiment


#: opened by test_trials_appear_live_while_an_experiment_runs once the page shows 3 trials
#: (the in-process cluster's workers share this module)
_PAGE_SHOWS_THREE = threading.Event()


def slow_objective(x, lr, kind, delay):
    time.sleep(delay)
    if daskhpo.reporting.current_trial() >= 5:  # the run is still going while the page is checked
        assert _PAGE_SHOWS_THREE.wait(60), "the page never showed 3 trials"
    return (x - 0.5) ** 2 + (0.1 if kind == "b" else 0.0) + 0.01 * abs(math.log10(lr))


def test_trials_appear_live_while_an_experiment_runs(browser, client, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="daskhpo")
    space = {"x": "uniform(-2, 2)", "lr": "loguniform(1e-4, 1)", "kind": "choices(['a', 'b'])"}
    experiment = daskhpo.build_experiment("live", space, "random", storage=tmp_path / "live.nc", seed=1)
    recorded: list[tuple[float, int]] = []
    first_recorded = threading.Event()
    experiment.subscribe(lambda r: recorded.append((time.perf_counter(), r.trial)) or first_recorded.set())
    page = Page(browser)
    board = experiment.dashboard()
    try:  # on the in-process LocalCluster of tests/conftest.py: 2 workers, 1 thread each
        page.open(board.url)
        assert page.text(".daskhpo-ntrials") == "0"
        page.page.evaluate("window.__not_reloaded = true")
        errors: list[BaseException] = []

        def run() -> None:
            try:
                experiment.workon(slow_objective, max_trials=8, client=client, dashboard=True, delay=0.3)
            except BaseException as exc:  # reported below
                errors.append(exc)

        runner = threading.Thread(target=run)
        _PAGE_SHOWS_THREE.clear()
        runner.start()
        try:
            assert first_recorded.wait(30), "no trial finished within 30 s"
            page.wait_for_length("trials_table", 1, timeout=10)
            latency = time.perf_counter() - recorded[0][0]
            # the run goes on after the first trial: more appear without a reload
            page.wait_for_length("trials_table", 3, timeout=30)
            assert len(recorded) < 8, "the run should still be going"
        finally:
            _PAGE_SHOWS_THREE.set()
            runner.join(60)
        assert not errors, errors
        page.wait_for_length("trials_table", 8, timeout=5)
        page.page.wait_for_function(
            "() => document.body && Bokeh.documents[0].get_model_by_name('summary').text.includes('>8</span> trials')",
            timeout=5000,
        )
        assert page.text(".daskhpo-ntrials") == "8"
        assert page.page.evaluate("window.__not_reloaded") is True
        shown = page.page.evaluate("Array.from(Bokeh.documents[0].get_model_by_name('trials_table').data.trial)")
        assert sorted(shown) == sorted(int(t) for t in experiment.history.trial.values)
        # streamed lines are re-scaled in the browser as the objective's range grows
        page.settle()
        drawn = sorted(ys[-1] for ys in page.drawn_column("parcoords_lines", "ys"))
        objective = sorted(float(v) for v in experiment.history.objective.values)
        lo, hi = objective[0], objective[-1]
        assert drawn == pytest.approx([(v - lo) / (hi - lo) for v in objective])
        best = page.text(".daskhpo-best")
        assert best == f"{experiment.best['objective']:.6g}"
        # the page links to this cluster's Dask dashboard
        page.page.wait_for_selector("a.daskhpo-dask-link", timeout=5000)
        assert page.page.locator("a.daskhpo-dask-link").get_attribute("href") == client.dashboard_link
        assert f"live dashboard at {board.url}" in caplog.text
        page.page.screenshot(path=str(tmp_path / "live.png"))
        assert page.errors == []
        print(f"\nupdate latency (trial on disk -> in the page): {latency * 1e3:.0f} ms")
        assert latency < 3.0
    finally:
        page.close()
        board.stop()


def test_ten_thousand_trials_are_streamed_not_resent(browser):
    experiment = make_experiment(0)
    board = experiment.dashboard()
    records = make_records(10_001, broken_every=50, workers=8)
    page = Page(browser)
    frames: list[int] = []
    page.page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(len(payload))))
    try:
        page.open(board.url)
        start = time.perf_counter()
        _feed(experiment, records[:10_000])
        page.wait_for_length("trials_table", 10_000, timeout=60)
        page.settle()
        stream_s = time.perf_counter() - start
        page.page.wait_for_function(
            "() => Bokeh.documents[0].get_model_by_name('summary').text.includes('>10000</span> trials')", timeout=10_000
        )
        # one more trial into a page holding 10,000: it arrives quickly, and small
        frames.clear()
        start = time.perf_counter()
        _feed(experiment, records[10_000:])
        page.wait_for_length("trials_table", 10_001, timeout=10)
        page.settle()
        one_s = time.perf_counter() - start
        # the summary is the update's last change: once it shows, all its messages arrived
        page.page.wait_for_function(
            "() => Bokeh.documents[0].get_model_by_name('summary').text.includes('>10001</span> trials')", timeout=10_000
        )
        update_bytes = sum(frames)
        assert update_bytes < 30_000, f"an update of one trial sent {update_bytes} bytes: re-sent whole?"
        assert one_s < 3.0
        # a fresh page of 10,001 trials loads
        other = Page(browser)
        try:
            load_s = other.open(board.url, timeout=60)
            other.page.wait_for_function(
                "() => Bokeh.documents[0].get_model_by_name('summary').text.includes('>10001</span> trials')",
                timeout=20_000,
            )
            assert other.model_length("lines") == 10_001 - 10_001 // 50
            assert other.errors == []
        finally:
            other.close()
        assert page.errors == []
        print(
            f"\n10,000 trials streamed into an open page and drawn in {stream_s:.2f} s; one more trial drawn in "
            f"{one_s * 1e3:.0f} ms ({update_bytes} bytes over the websocket); page of 10,001 trials "
            f"loaded in {load_s:.2f} s"
        )
    finally:
        page.close()
        board.stop()


def test_file_follower_reads_journal_lines_and_replaced_snapshots(tmp_path):
    path = str(tmp_path / "exp.nc")
    records = make_records(12)
    writer = make_experiment(0, path=path)._history
    for r in records[:5]:
        writer.append(r)
    feed = TrialFeed()
    follower = FileFollower(path, feed)
    assert follower.poll() == 5
    writer.append(records[5])
    writer.append(records[6])
    assert follower.poll() == 2 and len(feed) == 7
    # a line being written is left for the next poll
    line = json.dumps(records[7].to_json())
    with open(f"{path}.journal", "a", encoding="utf-8") as fh:
        fh.write(line[:20])
        fh.flush()
        assert follower.poll() == 0
        fh.write(line[20:] + "\n")
    assert follower.poll() == 1
    # the writer snapshots (the file is replaced, the journal emptied) and goes on
    writer._add(records[7])
    writer.snapshot()
    for r in records[8:12]:
        writer.append(r)
    assert follower.poll() == 4
    assert [r.trial for r in feed.since(0)[0]] == list(range(12))
    assert follower.poll() == 0


def _start_cli(path: str) -> tuple[subprocess.Popen, str]:
    if os.environ.get("CI", "").lower() == "true":
        command = ["daskhpo"]  # the console script installed by pip
    else:
        command = [sys.executable, "-m", "daskhpo.integrations.cli"]
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [*command, "dashboard", path, "--port", "0", "--interval", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        first = lines.get(timeout=60)
    except queue.Empty:
        proc.kill()
        raise AssertionError("the CLI printed no URL within 60 s") from None
    assert "http://localhost:" in first, (first, proc.stderr.read() if proc.poll() is not None else "")
    url = first[first.index("http://"):].split()[0]
    return proc, url


def test_cli_serves_a_saved_history_and_follows_it_as_it_grows(browser, tmp_path):
    path = str(tmp_path / "saved.nc")
    records = make_records(40, broken_every=9)
    writer = make_experiment(0, path=path)._history
    for r in records[:30]:
        writer.append(r)
    writer.snapshot()
    proc, url = _start_cli(path)
    page = Page(browser)
    try:
        page.open(url)
        assert page.text(".daskhpo-ntrials") == "30"
        assert path in page.page.evaluate("Bokeh.documents[0].get_model_by_name('header').text")
        # another process keeps writing: journal lines, then a new snapshot
        for r in records[30:35]:
            writer.append(r)
        page.wait_for_length("trials_table", 35, timeout=10)
        writer.snapshot()
        for r in records[35:40]:
            writer.append(r)
        page.wait_for_length("trials_table", 40, timeout=10)
        page.page.wait_for_function(
            "() => Bokeh.documents[0].get_model_by_name('summary').text.includes('>40</span> trials')", timeout=5000
        )
        assert page.model_length("trials_table") == 40  # each trial once
        page.page.screenshot(path=str(tmp_path / "saved.png"), full_page=True)
        assert (tmp_path / "saved.png").stat().st_size > 20_000
        assert page.errors == []
    finally:
        page.close()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0


def test_serve_history_of_a_missing_file_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no experiment stored"):
        serve_history(tmp_path / "nothing.nc")


def test_quarantined_workers_are_listed_under_the_counts(tmp_path):
    """From the experiment live, and from a stored history's attrs when following a file."""
    from daskhpo.viz.dashboard import make_app

    entry = {"worker": "tcp://10.0.0.7:4000", "host": "gpu-node-7", "when": 1.7e9,
             "why": "RuntimeError: CUDA error: an illegal memory access"}
    experiment = make_experiment(6)
    board = experiment.dashboard()
    try:
        assert "quarantined" not in _summary_text(board._info)
        experiment._on_quarantine(dict(entry))  # what the engine calls
        text = _summary_text(board._info)
        assert "daskhpo-quarantined" in text and "gpu-node-7" in text and "illegal memory access" in text
    finally:
        board.stop()
    path = str(tmp_path / "q.nc")
    writer = make_experiment(0, path=path)
    writer._history.attrs["quarantined"] = json.dumps([entry])
    for record in make_records(3):
        writer._history.append(record)
    writer._history.snapshot()
    feed = TrialFeed()
    follower = FileFollower(path, feed)
    follower.poll()
    _, info = make_app("q", experiment.space, feed, quarantined=lambda: json.loads(follower.attrs.get("quarantined", "[]")))
    assert "gpu-node-7" in _summary_text(info)


def _summary_text(info) -> str:
    from bokeh.document import Document

    from daskhpo.viz.dashboard import _Session

    return _Session(info, Document()).summary.text


XSS = '<img src=x onerror="window.__xss=(window.__xss||[]).concat([1])">'


def test_what_a_storage_file_says_is_escaped_not_run(browser, tmp_path):
    """A crafted file (objectives, name, errors) shows its text; no markup of it reaches the page."""
    from bokeh.models import Div, TableColumn

    from daskhpo.viz.dashboard import make_app

    path = str(tmp_path / "crafted.nc")
    writer = make_experiment(0, path=path)
    import dataclasses

    for record in make_records(4, broken_every=2):
        if record.error:
            record = dataclasses.replace(record, error=f"ValueError: {XSS}")
        writer._history.append(record)
    writer._history.attrs["objectives"] = json.dumps({f"loss{XSS}": f"minimize{XSS}", "size": "maximize"})
    writer._history.attrs["name"] = f"exp{XSS}"
    writer._history.snapshot()

    # the Bokeh models: every text shown as HTML escapes it, column titles too
    feed = TrialFeed()
    follower = FileFollower(path, feed)
    follower.poll()
    from daskhpo.objectives import objectives_from_attrs

    _, info = make_app(f"exp{XSS}", writer.space, feed, objectives=objectives_from_attrs(follower.attrs))
    from bokeh.document import Document

    from daskhpo.viz.dashboard import _Session

    doc = Document()
    _Session(info, doc)
    texts = [m.text for m in doc.select({"type": Div})] + [m.title for m in doc.select({"type": TableColumn})]
    assert texts and not [t for t in texts if "<img" in t]
    assert any("&lt;img" in t for t in texts)

    board = serve_history(path)
    page = Page(browser)
    try:
        assert board.url.startswith("http://localhost:")
        page.open(board.url)
        page.settle()
        page.page.wait_for_timeout(300)  # an <img src=x> errors at once: give it its event turn
        assert page.page.evaluate("() => window.__xss === undefined")
        assert page.page.locator("img[src=x]").count() == 0
        assert page.page.get_by_text("minimize<img", exact=False).count() >= 1  # shown as text
    finally:
        page.close()
        board.stop()


def test_the_dashboard_listens_on_localhost_only():
    import socket

    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))  # no packet sent: picks the outward interface
        outward = probe.getsockname()[0]
    except OSError:
        outward = None
    finally:
        probe.close()
    if not outward or outward.startswith("127."):
        pytest.skip("no network interface other than loopback")
    board = make_experiment(3).dashboard()
    try:
        with socket.create_connection(("127.0.0.1", board.port), timeout=5):
            pass
        with pytest.raises(OSError):
            socket.create_connection((outward, board.port), timeout=5).close()
    finally:
        board.stop()


def test_regret_axis_turns_log_when_objectives_span_orders_of_magnitude(browser):
    import dataclasses

    def spanning(values, start):
        return [dataclasses.replace(r, trial=start + i, status="completed", objective=v, error=None)
                for i, (r, v) in enumerate(zip(make_records(len(values), seed=start), values))]

    scale = ("() => Bokeh.documents[0].get_model_by_name('regret').y_scale.constructor.__name__")
    experiment = make_experiment(0)
    board = experiment.dashboard()
    page = Page(browser)
    try:
        page.open(board.url)
        _feed(experiment, spanning([5.0, 4.1, 3.2], 0))
        page.wait_for_length("trials", 3)
        page.settle()
        assert page.page.evaluate(scale) == "LinearScale"
        _feed(experiment, spanning([823.0, 0.19], 3))
        page.wait_for_length("trials", 5)
        page.page.wait_for_function(f"() => ({scale})() === 'LogScale'", timeout=10_000, polling=50)
        page.settle()
        assert page.errors == []
    finally:
        page.close()
        board.stop()
