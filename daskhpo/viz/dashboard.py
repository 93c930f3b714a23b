"""A live Bokeh dashboard of an experiment, served from the client process.

Two ways in:

* ``experiment.dashboard(port=0)`` (or ``experiment.workon(fn, ..., dashboard=True)``)
  serves the experiment being run: the engine hands every finished trial to
  :meth:`TrialFeed.add` (an O(1) append under a lock, so it never waits for a browser);
* ``daskhpo dashboard PATH`` serves a saved history, and a :class:`FileFollower` thread
  reads the new trials that another process appends to it.

Either way, every browser session keeps a cursor into the shared :class:`TrialFeed` and,
a few times a second on the Bokeh server's own event loop, streams only the trials it has
not seen yet into its sources (:meth:`~bokeh.models.ColumnDataSource.stream`).  Nothing
is ever re-sent whole, so a page of 10,000 trials stays responsive: an update of one trial
sends a few kB whatever the history's size.  As every update makes the browser redraw all
trials, the gap between two updates of a session grows with the trials shown (0.25 s, plus
0.25 s per 5,000 trials), leaving the page free for panning and zooming in between.

The page shows the trial counts by status, the best trial so far, the objective against
the order in which trials finished with the best so far, the timeline of trials on
workers, parallel coordinates and the table of trials, and links to the Dask dashboard
when there is one.  An experiment with several objectives shows its Pareto front (the first
two objectives) and the front's size instead of the objective and the best so far.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from bokeh.layouts import column, row
from bokeh.models import (
    ColumnDataSource,
    DataTable,
    Div,
    LinearColorMapper,
    NumberFormatter,
    StringFormatter,
    TableColumn,
)
from bokeh.palettes import Viridis256

from ..objectives import objectives_from_attrs, signs
from ..pareto import non_dominated
from ..records import TrialRecord
from ..space import Categorical, Space
from ..store.history import read_snapshot
from ..store.journal import JournalTail
from . import plot as _plot

if TYPE_CHECKING:
    from bokeh.document import Document

    from ..experiment import Experiment  # only for type annotations: no import at run time

__all__ = ["Dashboard", "TrialFeed", "FileFollower", "serve_experiment", "serve_history", "make_app"]

logger = logging.getLogger(__name__)

#: milliseconds between two updates of a browser session
UPDATE_MS = 250
#: trials at which the gap between two updates of a session has doubled (it grows linearly)
THROTTLE_TRIALS = 5000


class TrialFeed:
    """Finished trial records in arrival order, shared by the sessions of a dashboard.

    Thread-safe and append-only; a trial id already present is ignored (a history file
    may hold a trial both in its snapshot and in its journal).

    Parameters
    ----------
    records : iterable of dict, optional
        Trials known from the start.
    """

    def __init__(self, records: Iterable[dict] = ()) -> None:
        self._lock = threading.Lock()
        self._records: list[TrialRecord] = []
        self._ids: set[int] = set()
        self.extend(records)

    def __len__(self) -> int:
        return len(self._records)

    def add(self, record: dict) -> None:
        """Append one finished trial (a listener of :class:`~daskhpo.Experiment`)."""
        with self._lock:
            if record.trial not in self._ids:
                self._ids.add(record.trial)
                self._records.append(record)

    def extend(self, records: Iterable[dict]) -> int:
        """Append several trials; returns how many were new."""
        with self._lock:
            before = len(self._records)
            for record in records:
                if record.trial not in self._ids:
                    self._ids.add(record.trial)
                    self._records.append(record)
            return len(self._records) - before

    def since(self, cursor: int) -> tuple[list[dict], int]:
        """The trials after position ``cursor``, and the new cursor."""
        with self._lock:
            return self._records[cursor:], len(self._records)


# -- the application ---------------------------------------------------------------------------


class _Info:
    """What every session of one dashboard shares: the feed, the space, the title."""

    def __init__(self, name: str, space: Space, feed: TrialFeed, source: str, dask_link: str | None = None,
                 direction: str = "minimize", quarantined: Callable[[], list[dict]] | None = None,
                 objectives: dict[str, str] | None = None) -> None:
        self.name = name
        #: name -> direction of each objective, for an experiment with several
        self.objectives = dict(objectives or {})
        #: the quarantined workers now (see :attr:`daskhpo.Experiment.quarantined`)
        self.quarantined = quarantined or (lambda: [])
        self.space = space
        #: "minimize" or "maximize": which way the best so far goes
        self.direction = direction
        self.feed = feed
        self.source = source
        self.dask_link = dask_link


def _param_cell(dim: Any, value: Any) -> Any:
    if isinstance(dim, Categorical):
        return _plot.label(value)
    return value


def _short_error(error: str | None) -> str:
    if not error:
        return ""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    text = lines[-1] if lines else ""
    return text if len(text) <= 120 else text[:117] + "..."


class _Session:
    """The document of one browser session and its incremental state."""

    def __init__(self, info: _Info, doc: Document) -> None:
        self.info = info
        self.doc = doc
        self.cursor = 0
        self.last_stream = -math.inf
        self.counts: dict[str, int] = {}
        self.n_completed = 0
        self.best: dict | None = None
        self.lo = math.inf
        self.hi = -math.inf
        self.workers: list[str] = []
        self.shown_link: str | None = None
        space = info.space
        names = list(space)
        self.table = ColumnDataSource(
            {k: [] for k in ("trial", "status", *self._value_columns(), *[f"p_{n}" for n in names], "duration", "worker",
                             "error")},
            name="trials_table",
        )
        self.points = ColumnDataSource({"order": [], "trial": [], "objective": []}, name="trials")
        self.best_line = ColumnDataSource({"order": [], "best": []}, name="best")
        self.lines = ColumnDataSource({"trial": [], "objective": [], "xs": [], "ys": []}, name="lines")
        self.labels = ColumnDataSource(_plot.parcoords_labels(space, 0.0, 1.0), name="labels")
        self.bars = ColumnDataSource({k: [] for k in _plot.timeline_columns([])}, name="bars")
        self.mapper = LinearColorMapper(palette=Viridis256, low=0, high=1)

        self.header = Div(text=self._header_html(), name="header", styles={"font-size": "14px"})
        self.summary = Div(text="", name="summary", styles={"font-size": "14px"})
        objectives = list(info.objectives)
        self.regret_fig: Any = None
        if objectives:
            # several objectives: every completed trial's values, and the current front
            self.pareto_points = ColumnDataSource({"trial": [], **{n: [] for n in objectives}}, name="pareto_trials")
            self.pareto_front = ColumnDataSource({"trial": [], **{n: [] for n in objectives}}, name="pareto_front")
            self.front_values = np.zeros((0, len(objectives)))  # minimized
            self.front_trials: list[int] = []
            regret_fig = _plot.pareto_figure(self.pareto_points, self.pareto_front, objectives[0], objectives[1],
                                             width=560, height=320, name="pareto")
            regret_fig.title.text = f"Pareto front: {objectives[1]} against {objectives[0]}"
        else:
            regret_fig = _plot.regret_figure(
                self.points, self.best_line, x="order", xlabel="trials finished", width=560, height=320, name="regret",
            )
            regret_fig.title.text = "Objective, and best so far, in the order trials finished"
            self.regret_fig = regret_fig
        self.timeline = _plot.timeline_figure(self.bars, ["(none yet)"], width=700, height=320)
        parcoords = _plot.parcoords_figure(space, self.lines, self.labels, self.mapper, width=1260, height=340)
        columns = [
            TableColumn(field="trial", title="trial", width=60),
            TableColumn(field="status", title="status", width=80),
        ]
        # the table's header renders a title as HTML: names from a file are escaped
        columns += [TableColumn(field=field, title=html.escape(field[2:] if field.startswith("o_") else field), width=100,
                                formatter=NumberFormatter(format="0.[000000]", nan_format=""))
                    for field in self._value_columns()]
        for n in names:
            fmt = StringFormatter() if isinstance(space[n], Categorical) else NumberFormatter(format="0.[000000]")
            columns.append(TableColumn(field=f"p_{n}", title=html.escape(n), formatter=fmt, width=100))
        columns += [
            TableColumn(field="duration", title="duration (s)", width=90, formatter=NumberFormatter(format="0.00", nan_format="")),
            TableColumn(field="worker", title="worker", width=170),
            TableColumn(field="error", title="error", width=300),
        ]
        table = DataTable(source=self.table, columns=columns, width=1260, height=300, index_position=None, name="table",
                          autosize_mode="none")
        doc.title = f"daskhpo: {info.name}"
        doc.add_root(column(self.header, self.summary, row(regret_fig, self.timeline), parcoords, table, name="dashboard"))
        self.update()
        self.summary.text = self._summary_html()
        doc.add_periodic_callback(self.update, UPDATE_MS)

    def _value_columns(self) -> list[str]:
        """The table's columns of results: ``objective``, or ``o_<name>`` for each of several."""
        return [f"o_{n}" for n in self.info.objectives] or ["objective"]

    # -- text --------------------------------------------------------------------------
    def _header_html(self) -> str:
        link = self.info.dask_link
        dask = (
            f'<a href="{html.escape(link)}" target="_blank" class="daskhpo-dask-link">Dask dashboard</a>'
            if link else '<span class="daskhpo-dask-link">(no Dask dashboard: not attached to a cluster)</span>'
        )
        return (
            f'<span style="font-size:20px;font-weight:bold">daskhpo · {html.escape(self.info.name)}</span>'
            f'&nbsp;&nbsp;<span style="color:#666">{html.escape(self.info.source)}</span>&nbsp;&nbsp;{dask}'
        )

    def _summary_html(self) -> str:
        total = sum(self.counts.values())
        counts = " · ".join(
            f'<span style="color:{_plot.status_color(s)}" class="daskhpo-count-{html.escape(s)}">{html.escape(s)}: {n}</span>'
            for s, n in sorted(self.counts.items())
        )
        text = f'<b><span class="daskhpo-ntrials">{total}</span> trials</b>'
        if counts:
            text += f" ({counts})"
        if self.info.objectives:
            text += (f'<br>Pareto front: <b class="daskhpo-front">{len(self.front_trials)}</b> trial(s) '
                     f"({', '.join(f'{html.escape(n)}: {html.escape(str(d))}' for n, d in self.info.objectives.items())})")
        if self.best is not None:
            params = ", ".join(f"{html.escape(k)}={html.escape(_plot.label(v))}" for k, v in self.best["params"].items())
            text += (
                f'<br>best so far: <b class="daskhpo-best">{self.best["objective"]:.6g}</b> '
                f"at trial {self.best['trial']} ({params})"
            )
        quarantined = self.info.quarantined()
        if quarantined:
            workers = "; ".join(f"{html.escape(str(q.get('host') or q.get('worker')))}: {html.escape(str(q.get('why', '')))}"
                                for q in quarantined)
            text += f'<br><span class="daskhpo-quarantined" style="color:#b2182b">quarantined: {workers}</span>'
        return text

    # -- streaming ---------------------------------------------------------------------
    def update(self) -> None:
        """Stream the trials this session has not shown yet (runs on the server loop)."""
        if self.info.dask_link != self.shown_link:
            self.shown_link = self.info.dask_link
            self.header.text = self._header_html()
        # Every update makes the browser redraw every trial: with many trials, update
        # less often, so that the page stays free to pan, zoom and scroll in between.
        now = time.monotonic()
        if now - self.last_stream < UPDATE_MS / 1e3 * (1 + self.cursor / THROTTLE_TRIALS):
            return
        new, cursor = self.info.feed.since(self.cursor)
        if not new:
            return
        self.cursor = cursor
        self.last_stream = now
        space = self.info.space
        names = list(space)
        table: dict[str, list] = {k: [] for k in self.table.data}
        points: dict[str, list] = {"order": [], "trial": [], "objective": []}
        best: dict[str, list] = {"order": [], "best": []}
        lines: dict[str, list] = {"trial": [], "objective": [], "xs": [], "ys": []}
        lo, hi = self.lo, self.hi
        maximize = self.info.direction == "maximize"
        if self.info.objectives:
            self._update_front(new)
        for r in new:
            status = r.status
            self.counts[status] = self.counts.get(status, 0) + 1
            objective = r.objective
            table["trial"].append(r.trial)
            table["status"].append(status)
            if self.info.objectives:  # one column per objective (NaN unless it completed)
                for i, n in enumerate(self.info.objectives):
                    table[f"o_{n}"].append(r.values[i] if len(r.values) > i else math.nan)
            else:
                table["objective"].append(objective)
            for n in names:
                table[f"p_{n}"].append(_param_cell(space[n], r.params.get(n)))
            table["duration"].append(r.duration)
            table["worker"].append(r.worker or "")
            table["error"].append(_short_error(r.error))
            if status != "completed" or not math.isfinite(objective):
                continue
            self.n_completed += 1
            best_value = None if self.best is None else self.best["objective"]
            if best_value is None or (objective > best_value if maximize else objective < best_value):
                self.best = {"objective": objective, "trial": r.trial, "params": dict(r.params)}
            points["order"].append(self.n_completed)
            points["trial"].append(r.trial)
            points["objective"].append(objective)
            best["order"].append(self.n_completed)
            best["best"].append(self.best["objective"])
            xs, ys = _plot.parcoords_row(space, r.params, objective)
            lines["trial"].append(r.trial)
            lines["objective"].append(objective)
            lines["xs"].append(xs)
            lines["ys"].append(ys)
            lo, hi = min(lo, objective), max(hi, objective)
        bars = _plot.timeline_columns(new)
        self.table.stream({k: _array(v) for k, v in table.items()})
        self.bars.stream({k: _array(v) for k, v in bars.items()})
        if points["order"]:
            self.points.stream({k: _array(v) for k, v in points.items()})
            self.best_line.stream({k: _array(v) for k, v in best.items()})
            self.lines.stream(lines)
        if (lo, hi) != (self.lo, self.hi):
            # Only the colour range and the few objective-axis labels change; the lines'
            # objective is scaled in the browser.
            self.lo, self.hi = lo, hi
            if self.regret_fig is not None:  # log when the objectives span orders of magnitude
                _plot.set_log_y(self.regret_fig, _plot.wants_log_axis(lo, hi))
            self.mapper.update(low=lo, high=hi if hi > lo else lo + 1)
            self.labels.data = _plot.parcoords_labels(space, lo, hi)
        workers = sorted(set(self.workers) | set(bars["worker"]))
        if workers != self.workers:
            self.workers = workers
            self.timeline.y_range.factors = workers
            self.timeline.height = max(220, 80 + 28 * len(workers))
        self.summary.text = self._summary_html()

    def _update_front(self, new: list[TrialRecord]) -> None:
        """Stream the new completed trials of a multi-objective experiment; redraw the front if it moved.

        A trial off the front stays off it, so the new front is that of the old front and
        the new trials: the cost of an update does not grow with the history.
        """
        objectives = list(self.info.objectives)
        done = [r for r in new if r.ok and r.feasible and len(r.values) == len(objectives)]
        if not done:
            return
        self.pareto_points.stream({"trial": _array([r.trial for r in done]),
                                   **{n: _array([r.values[i] for r in done]) for i, n in enumerate(objectives)}})
        sign = np.array(signs(self.info.objectives))
        values = np.vstack([self.front_values, np.array([r.values for r in done], dtype=float) * sign])
        trials = self.front_trials + [r.trial for r in done]
        keep = non_dominated(values)
        self.front_values = values[keep]
        self.front_trials = [t for t, k in zip(trials, keep) if k]
        order = np.argsort(self.front_values[:, 0], kind="stable")
        user = self.front_values[order] * sign  # back to the values the objective returned
        self.pareto_front.data = {"trial": np.array(self.front_trials, dtype=np.int64)[order],
                                  **{n: user[:, i] for i, n in enumerate(objectives)}}


def _array(values: Sequence[Any]) -> Any:
    """Numeric columns as float arrays (NaN survives serialization), others as lists."""
    if values and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=float if any(isinstance(v, (float, np.floating)) for v in values) else np.int64)
    return list(values)


def make_app(name: str, space: Space, feed: TrialFeed, *, source: str = "", dask_link: str | None = None,
             direction: str = "minimize", quarantined: Callable[[], list[dict]] | None = None,
             objectives: dict[str, str] | None = None) -> tuple[Callable[[Document], None], _Info]:
    """The Bokeh application function of a dashboard, and its shared state.

    Parameters
    ----------
    name : str
        The experiment's name (page title).
    space : Space
    feed : TrialFeed
        Where the trials come from.
    source : str
        What is shown (a path, "live"), for the header.
    dask_link : str, optional
        URL of the Dask dashboard.
    direction : {"minimize", "maximize"}, default "minimize"
        The experiment's direction: the best so far is the lowest or the highest objective.
    quarantined : callable, optional
        Returns the quarantined workers now (shown under the counts).
    objectives : dict, optional
        Name -> direction of each objective of a multi-objective experiment: the page then
        shows the Pareto front of the first two (and its size) instead of the best so far.
    """
    info = _Info(name, space, feed, source, dask_link, direction, quarantined, objectives)

    def make_document(doc: Document) -> None:
        _Session(info, doc)

    return make_document, info


# -- the server --------------------------------------------------------------------------------


class Dashboard:
    """A Bokeh server running in a background thread of this process.

    Use :meth:`daskhpo.Experiment.dashboard` or ``daskhpo dashboard PATH`` rather than
    building one directly.

    Parameters
    ----------
    make_document : callable
        The Bokeh application function.
    port : int, default 0
        0 picks a free port.
    address : str, default "localhost"
        The interface to listen on; the default keeps the dashboard local.
    info : optional
        The application's shared state (for :attr:`dask_link`).
    on_stop : callable, optional
        Called once when the server stops.

    Attributes
    ----------
    url : str
        The page's address.
    port : int
    """

    def __init__(
        self,
        make_document: Callable[[Document], None],
        *,
        port: int = 0,
        address: str = "localhost",
        info: _Info | None = None,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port < 65536:
            raise ValueError(f"port must be an integer in [0, 65535], got {port!r}")
        self._info = info
        self._on_stop = on_stop
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._error: BaseException | None = None
        self._server: Any = None
        self._io_loop: Any = None
        self.address = address
        self.port = port
        self._thread = threading.Thread(
            target=self._run, args=(make_document, port, address), name="daskhpo-dashboard", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        host = f"[{address}]" if ":" in address else address
        self.url = f"http://{host}:{self.port}/"
        logger.info("daskhpo dashboard at %s", self.url)

    def _run(self, make_document: Callable[[Document], None], port: int, address: str) -> None:
        from bokeh.application import Application
        from bokeh.application.handlers.function import FunctionHandler
        from bokeh.server.server import Server
        from tornado.ioloop import IOLoop

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            self._io_loop = IOLoop.current()
            for attempt in range(5):
                chosen = port or _free_port(address)
                hosts = {"localhost", "127.0.0.1", address}
                try:
                    self._server = Server(
                        {"/": Application(FunctionHandler(make_document))},
                        io_loop=self._io_loop,
                        port=chosen,
                        address=address,
                        # the page's websocket, whether opened as localhost or 127.0.0.1
                        allow_websocket_origin=sorted(f"{h}:{chosen}" for h in hosts),
                    )
                    break
                except OSError:
                    if port or attempt == 4:  # the port asked for is taken
                        raise
            self._server.start()
            self.port = self._server.port
        except BaseException as exc:  # reported to the constructor's caller
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            self._io_loop.start()
        finally:
            self._io_loop.close(all_fds=True)
            self._stopped.set()

    @property
    def running(self) -> bool:
        """Whether the server still serves."""
        return self._thread.is_alive() and not self._stopped.is_set()

    @property
    def dask_link(self) -> str | None:
        """URL of the Dask dashboard shown in the page (set it to change the link)."""
        return self._info.dask_link if self._info is not None else None

    @dask_link.setter
    def dask_link(self, url: str | None) -> None:
        if self._info is not None:
            self._info.dask_link = url

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and end the server's thread (safe to call twice)."""
        if self._on_stop is not None:
            on_stop, self._on_stop = self._on_stop, None
            on_stop()
        if not self.running:
            return

        def shutdown() -> None:
            self._server.stop()
            self._io_loop.stop()

        self._io_loop.add_callback(shutdown)
        self._thread.join(timeout)
        logger.info("daskhpo dashboard at %s stopped", self.url)

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Dashboard {self.url} {'running' if self.running else 'stopped'}>"


def _free_port(address: str) -> int:
    """A port that is free now on ``address`` (the server binds it right after)."""
    import socket

    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def serve_experiment(experiment: Experiment, *, port: int = 0, address: str = "localhost", dask_link: str | None = None) -> Dashboard:
    """Serve a live dashboard of ``experiment`` (see :meth:`daskhpo.Experiment.dashboard`)."""
    feed = TrialFeed()
    unsubscribe = experiment.subscribe(feed.add, replay=True)
    if dask_link is None:
        dask_link = _current_dask_link(experiment)
    make_document, info = make_app(experiment.name, experiment.space, feed, source="live", dask_link=dask_link,
                                     direction=experiment.direction, quarantined=lambda: experiment.quarantined,
                                     objectives=experiment.objectives)
    return Dashboard(make_document, port=port, address=address, info=info, on_stop=unsubscribe)


def _current_dask_link(experiment: Experiment) -> str | None:
    client = experiment.client
    if client is None:
        try:
            from distributed import default_client

            client = default_client()
        except (ImportError, ValueError):
            return None
    return dask_link(client)


def dask_link(client: Any) -> str | None:
    """The Dask dashboard URL of a client, or None when the scheduler serves none."""
    try:
        return client.dashboard_link
    except Exception:  # no HTTP server on the scheduler (dashboard disabled)
        return None


# -- following a file --------------------------------------------------------------------------


class FileFollower:
    """Reads the trials that another process appends to a stored history.

    Every ``interval`` seconds, in a daemon thread: the new complete lines of the journal
    are added to the feed (through :class:`daskhpo.store.journal.JournalTail`); when the snapshot
    at ``path`` is replaced (after which the writer empties the journal), the snapshot is
    read again and the journal from its start.  Trials seen twice are ignored by the feed.

    Parameters
    ----------
    path : path
    feed : TrialFeed
    interval : float, default 0.5
    """

    def __init__(self, path: str | os.PathLike, feed: TrialFeed, interval: float = 0.5) -> None:
        self.path = os.fspath(path)
        self.feed = feed
        self.interval = interval
        self._snapshot_stamp: tuple | None = None
        self._tail = JournalTail(self.path)
        #: the attrs of the last snapshot read
        self.attrs: dict = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> int:
        """Read what is new now; returns the number of new trials."""
        new = 0
        stamp = _stamp(self.path)
        if stamp is not None and stamp != self._snapshot_stamp:
            new += self._read_snapshot()
            self._snapshot_stamp = stamp
            self._tail.rewind()
        return new + self.feed.extend(e for e in self._tail.poll() if isinstance(e, TrialRecord))

    def _read_snapshot(self) -> int:
        try:
            _, self.attrs, events = read_snapshot(self.path)
        except OSError as exc:  # replaced while we read: next poll
            logger.debug("snapshot %s not readable yet: %s", self.path, exc)
            return 0
        return self.feed.extend(e for e in events if isinstance(e, TrialRecord))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:
                logger.exception("following %s failed", self.path)

    def start(self) -> FileFollower:
        """Poll in a daemon thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._loop, name="daskhpo-follow", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5 * self.interval + 5)


def _stamp(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def serve_history(path: str | os.PathLike, *, port: int = 0, address: str = "localhost", interval: float = 0.5) -> Dashboard:
    """Serve the dashboard of a stored history, following the file as it grows.

    Parameters
    ----------
    path : path
        The storage path given to :func:`daskhpo.build_experiment`.
    port : int, default 0
    address : str, default "localhost"
    interval : float, default 0.5
        Seconds between two reads of the file.

    Raises
    ------
    FileNotFoundError
        If nothing is stored at ``path``.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no experiment stored at {path!r}")
    space, attrs, _ = read_snapshot(path)
    feed = TrialFeed()
    follower = FileFollower(path, feed, interval)
    follower.poll()
    make_document, info = make_app(str(attrs.get("name", "")), space, feed, source=path,
                                     direction=str(attrs.get("direction", "minimize")),
                                     quarantined=lambda: json.loads(follower.attrs.get("quarantined", "[]")),
                                     objectives=objectives_from_attrs(attrs))
    follower.start()
    started = time.monotonic()
    dashboard = Dashboard(make_document, port=port, address=address, info=info, on_stop=follower.stop)
    logger.debug("dashboard of %s up in %.2f s", path, time.monotonic() - started)
    return dashboard
