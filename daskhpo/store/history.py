"""The experiment's history: an :class:`xarray.Dataset` that is durable as it grows.

Data model
----------
One dataset with dimension ``trial`` (coordinate: the trial id).  Variables:

* one per parameter, with its natural dtype (``float64``, ``int64``, ``str``, ``bool``;
  categorical parameters mixing types, such as ``[None, "balanced"]``, are stored as the
  ``repr`` of the value);
* ``objective`` and one ``float64`` variable per other metric (NaN where absent); in an
  experiment with several objectives (attr ``objectives``), one variable per objective,
  ``objective_<name>`` (NaN unless the trial completed; attr ``direction``), and no
  ``objective``;
* bookkeeping: ``status``, ``submitted``, ``started``, ``ended`` (``datetime64``),
  ``duration`` (seconds), ``worker`` (address), ``gpu`` (``CUDA_VISIBLE_DEVICES``),
  ``attempts`` and ``error``;
* lineage: ``parent`` (the trial this one continues, e.g. the trial an ASHA promotion
  promotes or a PBT member's previous segment) and ``checkpoint_from`` (the trial whose
  checkpoint it started from), ``int64`` with ``-1`` for none;
* constraints, once some trial returned ``{"objective": v, "constraints": [c0, c1, ...]}``:
  ``constraint_0``, ``constraint_1``, ... (``float64``, NaN where a trial has no such
  constraint) and ``feasible`` (``bool``, never missing: every constraint of the trial is
  ``<= 0``, so a trial without constraints, whatever its status, is feasible; filter on
  ``status`` as well);
* order: ``order`` (``int64``), the sequence number of the event that recorded the trial
  in the experiment's event log; sorting by it gives the order in which trials finished;
* intermediate results sent with :func:`daskhpo.report`: one ``float64`` variable
  ``reported_<name>`` (``reported_objective``, ``reported_<metric>``) with dims
  ``("trial", "step")``, NaN where a trial reported nothing at that step, and the
  coordinate ``step`` (the sorted union of reported steps, ``int64`` when all are whole
  numbers); ``report_order`` (``int64``, -1 where none) holds each report's sequence
  number; ``last_step`` (``float64``, per trial) is the last step a trial reported (for a
  pruned trial, where it stopped).  These exist only once some trial reported.

Attrs hold the experiment name, the space (JSON of prior strings), the algorithm and its
configuration (JSON), the seed and the daskhpo version.

Storage: a snapshot plus an ordered journal
-------------------------------------------
``storage="exp.nc"`` is a netCDF-4 file that xarray opens directly.  Rewriting it after
every trial would make each trial cost O(history), so each event (a trial submitted, a
report, a finished trial) is first appended as one line to the journal ``exp.nc.journal``
(see :mod:`daskhpo.store.journal`) and flushed before the optimizer hears of it.  Every
``snapshot_interval`` seconds, and when the engine stops (normally, on an error or on
Ctrl-C), the whole history is written to a temporary file, ``fsync``-ed and moved over
``exp.nc`` with :func:`os.replace`; then the journal is emptied.  A crash at any moment
leaves a readable snapshot and a journal whose complete lines hold every event since;
loading merges the two (an event in both is taken once), ignores a torn last line, and
orders every event by its sequence number, so that resume replays them to a fresh
optimizer exactly in the order the live one saw them.

Reports of trials still running are kept out of the snapshot (the dataset holds finished
trials) and written again, with their sequence numbers, to the fresh journal; reports of
trials that never finished (the client crashed while they ran) are dropped when loading.
Checkpoints are not part of the history (see :mod:`daskhpo.store.checkpoints`).

The history is shared by the experiment's loop (which appends) and readers in other
threads (a dashboard, a progress bar): every method takes its lock.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import dask
import numpy as np
import xarray as xr

from .journal import Journal, read_journal
from ..objectives import objectives_from_attrs, variable
from ..records import FINISHED, Event, ReportRecord, TrialRecord, TrialStarted
from ..results import BOOKKEEPING, CONSTRAINT, RESERVED_PREFIXES
from ..space import Categorical, Space
from .errors import ENGINE, open_snapshot

__all__ = ["History", "load_history", "read_history", "read_snapshot", "REPORTED"]

logger = logging.getLogger(__name__)

#: prefix of the history's variables of intermediate reports
REPORTED = RESERVED_PREFIXES[0]
_TIMES = ("submitted", "started", "ended")
_STRINGS = ("status", "worker", "gpu", "error")
_IDS = ("parent", "checkpoint_from")


def _to_datetime(seconds: list[float | None]) -> np.ndarray:
    ns = [np.datetime64("NaT") if s is None or not math.isfinite(s) else np.datetime64(int(s * 1e9), "ns") for s in seconds]
    return np.array(ns, dtype="datetime64[ns]")


def _from_datetime(values: np.ndarray) -> list[float | None]:
    return [None if np.isnat(v) else v.astype("int64") / 1e9 for v in values.astype("datetime64[ns]")]


class History:
    """Trials of one experiment and their reports, in memory and (optionally) on disk.

    Parameters
    ----------
    space : Space
        Decodes and encodes parameter values.
    attrs : dict
        Dataset attrs (strings and numbers only).
    path : str, optional
        Storage path; without it the history lives in memory.
    events : iterable of TrialRecord or ReportRecord, optional
        Events loaded from storage (see :func:`read_history`), in their order; records
        without a sequence number are numbered in the order given.
    snapshot_interval : float
        Seconds between full snapshots while trials arrive.
    fsync : bool, default False
        Force each journal line to the disk before :meth:`append` returns (see
        :class:`daskhpo.store.journal.Journal`).
    """

    def __init__(
        self,
        space: Space,
        attrs: Mapping[str, Any],
        path: str | os.PathLike | None = None,
        events: Iterable[Event] = (),
        snapshot_interval: float = 30.0,
        fsync: bool = False,
    ) -> None:
        self.space = space
        self.attrs = dict(attrs)
        self.path = os.fspath(path) if path is not None else None
        self.snapshot_interval = snapshot_interval
        self._lock = threading.RLock()
        self._records: dict[int, TrialRecord] = {}
        #: trial -> step -> report
        self._reports: dict[int, dict[float, ReportRecord]] = {}
        self._next_seq = 0
        for event in events:
            self._add(event)
        self._dataset: xr.Dataset | None = None
        self._journal = Journal(self.path, fsync=fsync) if self.path is not None else None
        self._last_snapshot = time.monotonic()
        if self.path is not None:
            self.snapshot()

    def __getstate__(self) -> dict[str, Any]:
        # A pickled history is a read-only copy: no lock, no journal writer.
        state = dict(self.__dict__)
        state["_lock"], state["_journal"] = None, None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def detach(self) -> None:
        """Stop writing: release the journal file without a snapshot (a read-only copy remains)."""
        with self._lock:
            if self._journal is not None:
                self._journal.close()
                self._journal = None

    def _add(self, event: Event) -> Event:
        if event.seq < 0:
            event = event.replace(seq=self._next_seq)
        self._next_seq = max(self._next_seq, event.seq + 1)
        if isinstance(event, TrialRecord):
            self._records[event.trial] = event
        elif isinstance(event, ReportRecord):
            self._reports.setdefault(event.trial, {})[event.step] = event
        return event

    # -- access ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._records)

    @property
    def records(self) -> list[TrialRecord]:
        """Finished trials, by trial id."""
        with self._lock:
            return [self._records[k] for k in sorted(self._records)]

    def events(self) -> list[TrialRecord | ReportRecord]:
        """Every finished trial and every report of one, in the order they happened."""
        with self._lock:
            events: list[TrialRecord | ReportRecord] = list(self._records.values())
            for trial_id in self._records:
                events.extend(self._reports.get(trial_id, {}).values())
        return sorted(events, key=lambda e: e.seq)

    def reports(self, trial_id: int) -> list[ReportRecord]:
        """The intermediate reports of a trial, by step."""
        with self._lock:
            per_trial = self._reports.get(trial_id, {})
            return [per_trial[s] for s in sorted(per_trial)]

    @property
    def next_trial_id(self) -> int:
        """The smallest id above every stored trial."""
        with self._lock:
            return max(self._records, default=-1) + 1

    def count(self, *statuses: str) -> int:
        """Number of trials with one of ``statuses`` (default: ``"completed"``)."""
        wanted = set(statuses or ("completed",))
        with self._lock:
            return sum(1 for r in self._records.values() if r.status in wanted)

    @property
    def finished(self) -> int:
        """Trials that count towards ``max_trials`` (completed or pruned)."""
        return self.count(*FINISHED)

    # -- writing -----------------------------------------------------------------------
    def _log(self, event: Event) -> Event:
        event = self._add(event)
        if self._journal is not None:
            self._journal.append(event)
        return event

    def append_start(self, start: TrialStarted) -> TrialStarted:
        """Journal that a trial was handed to the cluster; returns it with its ``seq``."""
        with self._lock:
            return self._log(start)

    def append_report(self, report: ReportRecord) -> ReportRecord:
        """Add an intermediate report; journaled (flushed) when this returns, with its ``seq``."""
        with self._lock:
            report = self._log(report)
            if report.trial in self._records:
                self._dataset = None
            return report

    def append(self, record: TrialRecord) -> TrialRecord:
        """Add a finished trial; journaled (flushed) when this returns, with its ``seq``."""
        with self._lock:
            record = self._log(record)
            self._dataset = None
            due = self._journal is not None and time.monotonic() - self._last_snapshot > self.snapshot_interval
        if due:
            self.snapshot()
        return record

    def snapshot(self) -> None:
        """Write the whole history to the storage path atomically, then empty the journal."""
        if self._journal is None:  # in memory, or a read-only copy
            return
        with self._lock:
            tmp = f"{self.path}.tmp-{os.getpid()}"
            # A local lock: with a default Dask client, xarray would take a distributed
            # lock on the scheduler for each write (a round trip, and an error once the
            # scheduler is gone: the very moment the history must reach the disk).
            with dask.config.set(scheduler="threads"):
                self.to_dataset().to_netcdf(tmp, engine=ENGINE)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            # Emptied only after the snapshot is in place: a crash in between leaves events
            # in both files, which loading takes once.
            running = [r for t in sorted(set(self._reports) - set(self._records)) for r in self.reports(t)]
            self._journal.restart(sorted(running, key=lambda r: r.seq))
            self._last_snapshot = time.monotonic()

    def close(self) -> None:
        """Snapshot and release the journal file."""
        if self._journal is None:
            return
        self.snapshot()
        self._journal.close()
        self._journal = None

    # -- the dataset -------------------------------------------------------------------
    def to_dataset(self) -> xr.Dataset:
        """The history as an :class:`xarray.Dataset` (cached until the next append)."""
        with self._lock:
            if self._dataset is None:
                self._dataset = self._build_dataset()
            return self._dataset

    def _build_dataset(self) -> xr.Dataset:
        records = self.records
        ids = np.array([r.trial for r in records], dtype="int64")
        data: dict[str, Any] = {}
        for name, dim in self.space.items():
            attrs = {"prior": str(dim)}
            if dim.when is not None:
                data[name] = ("trial", _conditional_column(dim, [r.params.get(name, _INACTIVE) for r in records]), attrs)
                continue
            values = [r.params[name] for r in records]
            if dim.dtype == "repr":
                data[name] = ("trial", np.array([repr(v) for v in values], dtype=object), attrs)
            elif dim.dtype == "str":
                data[name] = ("trial", np.array(values, dtype=object), attrs)
            else:
                data[name] = ("trial", np.array(values, dtype=dim.dtype), attrs)
        objectives = objectives_from_attrs(self.attrs)
        if objectives:  # one variable per objective instead of "objective"
            for i, (name, direction) in enumerate(objectives.items()):
                values = [r.values[i] if r.values else math.nan for r in records]
                data[variable(name)] = ("trial", np.array(values, dtype="float64"), {"direction": direction})
        else:
            data["objective"] = ("trial", np.array([r.objective for r in records], dtype="float64"))
        for metric in sorted({m for r in records for m in r.metrics}):
            data[metric] = ("trial", np.array([r.metrics.get(metric, math.nan) for r in records], dtype="float64"))
        for key in _TIMES:
            data[key] = ("trial", _to_datetime([getattr(r, key) for r in records]))
        data["duration"] = ("trial", np.array([r.duration for r in records], dtype="float64"), {"units": "s"})
        for key in _STRINGS:
            data[key] = ("trial", np.array([getattr(r, key) or "" for r in records], dtype=object))
        data["attempts"] = ("trial", np.array([r.attempts for r in records], dtype="int64"))
        for key in _IDS:
            data[key] = ("trial", np.array([_id_or_minus(getattr(r, key)) for r in records], dtype="int64"))
        data["last_step"] = ("trial", np.array([r.last_step for r in records], dtype="float64"))
        data["order"] = ("trial", np.array([r.seq for r in records], dtype="int64"))
        n_constraints = max((len(r.constraints) for r in records), default=0)
        for i in range(n_constraints):
            data[f"{CONSTRAINT}{i}"] = ("trial", np.array(
                [r.constraints[i] if i < len(r.constraints) else math.nan for r in records], dtype="float64"))
        if n_constraints:
            data["feasible"] = ("trial", np.array([r.feasible for r in records], dtype=bool))
        coords: dict[str, Any] = {"trial": ids}
        reports = [self._reports.get(int(t), {}) for t in ids]
        steps = sorted({s for per_trial in reports for s in per_trial})
        if steps:
            names = sorted({n for per_trial in reports for r in per_trial.values() for n in r.values})
            position = {s: j for j, s in enumerate(steps)}
            order = np.full((len(ids), len(steps)), -1, dtype="int64")
            tables = {name: np.full((len(ids), len(steps)), math.nan) for name in names}
            for i, per_trial in enumerate(reports):
                for s, report in per_trial.items():
                    order[i, position[s]] = report.seq
                    for name, value in report.values.items():
                        tables[name][i, position[s]] = value
            for name, table in tables.items():
                data[f"{REPORTED}{name}"] = (("trial", "step"), table)
            data["report_order"] = (("trial", "step"), order)
            integral = all(float(s).is_integer() for s in steps)
            coords["step"] = np.array(steps, dtype="int64" if integral else "float64")
        return xr.Dataset(data, coords=coords, attrs=self.attrs)


#: a conditional parameter's value in a trial where it is inactive
_INACTIVE = object()


def _conditional_column(dim: Any, values: list) -> np.ndarray:
    """A conditional parameter's column: numbers as float64 with NaN where inactive; other
    values as strings (``str`` choices as they are, ``bool`` and mixed ones by ``repr``),
    empty where inactive."""
    if dim.dtype in ("float64", "int64"):
        return np.array([math.nan if v is _INACTIVE else float(v) for v in values], dtype="float64")
    if dim.dtype == "str":
        return np.array(["" if v is _INACTIVE else v for v in values], dtype=object)
    return np.array(["" if v is _INACTIVE else repr(v) for v in values], dtype=object)


def _conditional_value(dim: Any, value: Any) -> Any:
    """Read back :func:`_conditional_column`: the value, or ``_INACTIVE``."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return _INACTIVE
    if isinstance(value, str):
        if value == "":
            return _INACTIVE
        if dim.dtype not in ("str", "float64", "int64"):
            value = ast.literal_eval(value)
    if dim.dtype == "int64" and isinstance(value, float):
        value = int(value)  # stored as float64 to hold NaN
    if isinstance(dim, Categorical):
        return dim.choices[dim.index(value)]
    return dim.cast(value)


def _values(values: list[float]) -> tuple[float, ...]:
    """A trial's objective values read back: none stored (all NaN) is the empty tuple."""
    return () if all(math.isnan(v) for v in values) else tuple(values)


def _id_or_minus(value: int | None) -> int:
    return -1 if value is None else int(value)


def _events_from_dataset(ds: xr.Dataset, space: Space) -> list[TrialRecord | ReportRecord]:
    """Decode a stored dataset back into its events (Python values)."""
    per_trial = [v for v in ds.data_vars if ds[v].dims == ("trial",)]
    constraint_names = []
    while f"{CONSTRAINT}{len(constraint_names)}" in per_trial:
        constraint_names.append(f"{CONSTRAINT}{len(constraint_names)}")
    objectives = [variable(n) for n in objectives_from_attrs(ds.attrs)]
    metrics = [v for v in per_trial if v not in space and v not in BOOKKEEPING and v != "objective"
               and v not in constraint_names and v not in objectives]
    columns = {name: ds[name].values for name in per_trial}
    reported = {
        str(name)[len(REPORTED):]: ds[name].values
        for name in ds.data_vars
        if str(name).startswith(REPORTED) and ds[name].dims == ("trial", "step")
    }
    steps = ds["step"].values if reported else []
    report_order = ds["report_order"].values if "report_order" in ds else None
    times = {key: _from_datetime(columns[key]) for key in _TIMES}
    events: list[TrialRecord | ReportRecord] = []
    for i, trial_id in enumerate(ds["trial"].values):
        params = {}
        for name, dim in space.items():
            value = columns[name][i]
            if dim.when is not None:
                value = _conditional_value(dim, value)
                if value is not _INACTIVE:
                    params[name] = value
                continue
            if dim.dtype == "repr":
                value = ast.literal_eval(str(value))
            elif isinstance(value, np.generic):
                value = value.item()
            params[name] = dim.cast(value) if not isinstance(dim, Categorical) else dim.choices[dim.index(value)]
        fields: dict[str, Any] = {key: times[key][i] for key in _TIMES}
        fields.update({key: str(columns[key][i]) or None for key in ("worker", "gpu", "error")})
        fields.update({key: None if columns[key][i] < 0 else int(columns[key][i]) for key in _IDS if key in columns})
        if "last_step" in columns:
            fields["last_step"] = float(columns["last_step"][i])
        events.append(TrialRecord(
            trial=int(trial_id),
            params=params,
            status=str(columns["status"][i]),
            objective=float(columns["objective"][i]) if "objective" in columns else math.nan,
            metrics={m: float(columns[m][i]) for m in metrics if not math.isnan(columns[m][i])},
            attempts=int(columns["attempts"][i]),
            seq=int(columns["order"][i]) if "order" in columns else -1,
            constraints=tuple(float(columns[c][i]) for c in constraint_names if not math.isnan(columns[c][i])),
            values=_values([float(columns[n][i]) for n in objectives]),
            **fields,
        ))
        for j, step in enumerate(steps):
            values = {name: float(table[i, j]) for name, table in reported.items() if not math.isnan(table[i, j])}
            if values:
                seq = int(report_order[i, j]) if report_order is not None else -1
                events.append(ReportRecord(int(trial_id), float(step), values, seq))
    return events


def read_snapshot(path: str | os.PathLike) -> tuple[Space, dict, list[TrialRecord | ReportRecord]]:
    """Read a snapshot file alone: its space, attrs and events (no journal).

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    daskhpo.store.errors.CorruptStorage
        An ``OSError`` naming the file, when it is not a readable netCDF-4 file
        (truncated, say); the file is left untouched.
    """
    path = os.fspath(path)
    ds = open_snapshot(path)
    if "space" not in ds.attrs:
        raise OSError(f"{path} is a netCDF file but not a daskhpo history (no 'space' attribute)")
    space = Space(json.loads(ds.attrs["space"]))
    return space, dict(ds.attrs), _events_from_dataset(ds, space)


def read_history(path: str | os.PathLike) -> tuple[Space, dict, list[TrialRecord | ReportRecord]]:
    """Read a stored history: its space, its attrs and its events in their original order.

    The snapshot and the journal are merged (an event in both is taken once); reports of
    trials that never finished are dropped.  Events of histories written before sequence
    numbers existed are ordered by trial id, each trial after its reports.

    Raises
    ------
    FileNotFoundError
        If there is no history at ``path``.
    ValueError
        For a corrupt journal line that is not the last (the file is left untouched).
    """
    space, attrs, stored = read_snapshot(path)
    records: dict[int, TrialRecord] = {}
    reports: dict[tuple[int, float], ReportRecord] = {}
    in_flight: set[int] = set()
    for event in [*stored, *read_journal(path)]:
        if isinstance(event, TrialRecord):
            records.setdefault(event.trial, event)
        elif isinstance(event, ReportRecord):
            reports.setdefault((event.trial, event.step), event)
        elif isinstance(event, TrialStarted):
            in_flight.add(event.trial)
    in_flight -= set(records)
    if in_flight:
        logger.info("%s: %d trial(s) were running when it was last written; they are not resumed", path, len(in_flight))
    orphans = {t for t, _ in reports} - set(records)
    if orphans:
        logger.info("%s: dropping the reports of %d trial(s) that never finished", path, len(orphans))
    events = [*records.values(), *(r for r in reports.values() if r.trial in records)]
    # Legacy files (no sequence numbers): by trial id, each trial after its reports.
    events.sort(key=lambda e: (e.seq, e.trial, isinstance(e, TrialRecord), getattr(e, "step", 0.0)))
    return space, attrs, events


def load_history(path: str | os.PathLike) -> History:
    """A stored history, read into memory (read-only: it writes nothing to ``path``).

    Raises
    ------
    FileNotFoundError
        If there is no history at ``path``.
    """
    space, attrs, events = read_history(path)
    return History(space, attrs, None, events)
