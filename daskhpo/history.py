"""The experiment's history: an :class:`xarray.Dataset` that is durable as it grows.

Data model
----------
One dataset with dimension ``trial`` (coordinate: the trial id).  Variables:

* one per parameter, with its natural dtype (``float64``, ``int64``, ``str``, ``bool``;
  categorical parameters mixing types, such as ``[None, "balanced"]``, are stored as the
  ``repr`` of the value);
* ``objective`` and one ``float64`` variable per other metric (NaN where absent);
* bookkeeping: ``status``, ``submitted``, ``started``, ``ended`` (``datetime64``),
  ``duration`` (seconds), ``worker`` (address), ``gpu`` (``CUDA_VISIBLE_DEVICES``),
  ``attempts`` and ``error``;
* lineage: ``parent`` (the trial this one continues, e.g. the trial an ASHA promotion
  promotes or a PBT member's previous segment) and ``checkpoint_from`` (the trial whose
  checkpoint it started from), ``int64`` with ``-1`` for none;
* intermediate results sent with :func:`daskhpo.report`: one ``float64`` variable
  ``reported_<name>`` (``reported_objective``, ``reported_<metric>``) with dims
  ``("trial", "step")``, NaN where a trial reported nothing at that step, and the
  coordinate ``step`` (the sorted union of reported steps, ``int64`` when all are whole
  numbers); ``last_step`` (``float64``, per trial) is the last step a trial reported (for a
  pruned trial, where it stopped).  These exist only once some trial reported.

Attrs hold the experiment name, the space (JSON of prior strings), the algorithm and its
configuration (JSON), the seed and the daskhpo version.

Storage: a snapshot plus an append-only journal
-----------------------------------------------
``storage="exp.nc"`` is a netCDF-4 file that xarray opens directly.  Rewriting it after
every trial would make each trial cost O(history), so each finished trial is first
appended, as one JSON line, to ``exp.nc.journal`` and flushed to the operating system
before the optimizer hears of it.  Every ``snapshot_interval`` seconds, and when the
engine stops (normally, on an error or on Ctrl-C), the whole history is written to a
temporary file, ``fsync``-ed and moved over ``exp.nc`` with :func:`os.replace`; then the
journal is emptied.  A crash at any moment leaves a readable snapshot and a journal whose
complete lines hold every trial since; loading merges the two (a trial in both is taken
once) and ignores a torn last line.

Intermediate reports are journaled the same way, one line each, before the optimizer
hears of them.  Reports of trials still running are kept out of the snapshot (the dataset
holds finished trials) and written again to the fresh journal; reports of trials that
never finished (the client crashed while they ran) are dropped when loading.
Checkpoints are not part of the history (see :mod:`daskhpo.checkpoints`).
"""

from __future__ import annotations

import ast
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import xarray as xr

from .optimizers.base import Trial
from .results import BOOKKEEPING
from .space import Categorical, Space

__all__ = ["History", "load_history"]

logger = logging.getLogger(__name__)

_ENGINE = "h5netcdf"
_TIMES = ("submitted", "started", "ended")
_STRINGS = ("status", "worker", "gpu", "error")


def _journal_path(path: str) -> str:
    return f"{path}.journal"


def _to_datetime(seconds: list[float | None]) -> np.ndarray:
    ns = [np.datetime64("NaT") if s is None or not math.isfinite(s) else np.datetime64(int(s * 1e9), "ns") for s in seconds]
    return np.array(ns, dtype="datetime64[ns]")


def _from_datetime(values: np.ndarray) -> list[float | None]:
    out = []
    for v in values.astype("datetime64[ns]"):
        out.append(None if np.isnat(v) else v.astype("int64") / 1e9)
    return out


class History:
    """Trials of one experiment, in memory and (optionally) on disk.

    Parameters
    ----------
    space : Space
        Decodes and encodes parameter values.
    attrs : dict
        Dataset attrs (strings and numbers only).
    path : str, optional
        Storage path; without it the history lives in memory.
    records : iterable of dict, optional
        Trials loaded from storage.
    snapshot_interval : float
        Seconds between full snapshots while trials arrive.
    """

    def __init__(
        self,
        space: Space,
        attrs: Mapping[str, Any],
        path: str | os.PathLike | None = None,
        records: Iterable[dict] = (),
        snapshot_interval: float = 30.0,
    ) -> None:
        self.space = space
        self.attrs = dict(attrs)
        self.path = os.fspath(path) if path is not None else None
        self.snapshot_interval = snapshot_interval
        self._records: dict[int, dict] = {}
        #: trial -> step -> {name: value}
        self._reports: dict[int, dict[float, dict[str, float]]] = {}
        for record in records:
            record = dict(record)
            reports = record.pop("reports", None)
            if reports:
                self._reports[record["trial"]] = {float(step): dict(values) for step, values in reports}
            self._records[record["trial"]] = record
        self._dataset: xr.Dataset | None = None
        self._journal = None
        self._last_snapshot = time.monotonic()
        if self.path is not None:
            self.snapshot()

    # -- access ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._records)

    @property
    def records(self) -> list[dict]:
        """Stored trial records, by trial id."""
        return [self._records[k] for k in sorted(self._records)]

    def trials(self) -> list[Trial]:
        """Stored trials as the optimizers see them, by trial id."""
        return [trial_of(r) for r in self.records]

    def reports(self, trial_id: int) -> list[tuple[float, dict[str, float]]]:
        """The intermediate reports of a trial: ``(step, values)`` by step."""
        return sorted(self._reports.get(trial_id, {}).items())

    @property
    def next_trial_id(self) -> int:
        """The smallest id above every stored trial."""
        return max(self._records, default=-1) + 1

    def count(self, status: str = "completed") -> int:
        """Number of trials with ``status``."""
        return sum(1 for r in self._records.values() if r["status"] == status)

    # -- writing -----------------------------------------------------------------------
    def _write(self, event: dict) -> None:
        if self._journal is None:
            self._journal = open(_journal_path(self.path), "a", encoding="utf-8")
        self._journal.write(json.dumps(event) + "\n")
        self._journal.flush()

    def append_report(self, trial_id: int, step: float, values: Mapping[str, float]) -> None:
        """Add an intermediate report of a trial; journaled (flushed) when this returns."""
        self._reports.setdefault(trial_id, {})[float(step)] = dict(values)
        if trial_id in self._records:
            self._dataset = None
        if self.path is not None:
            self._write({"event": "report", "trial": trial_id, "step": float(step), "values": dict(values)})

    def append(self, record: dict) -> None:
        """Add a finished trial; it is in the journal (flushed) when this returns."""
        self._records[record["trial"]] = record
        self._dataset = None
        if self.path is None:
            return
        self._write({"event": "trial", **record})
        if time.monotonic() - self._last_snapshot > self.snapshot_interval:
            self.snapshot()

    def snapshot(self) -> None:
        """Write the whole history to the storage path atomically, then empty the journal."""
        if self.path is None:
            return
        tmp = f"{self.path}.tmp-{os.getpid()}"
        self.to_dataset().to_netcdf(tmp, engine=_ENGINE)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        if self._journal is not None:
            self._journal.close()
        # Emptied only after the snapshot is in place: a crash in between leaves trials
        # in both files, which loading deduplicates.
        self._journal = open(_journal_path(self.path), "w", encoding="utf-8")
        for trial_id in sorted(set(self._reports) - set(self._records)):  # still running
            for step, values in sorted(self._reports[trial_id].items()):
                self._write({"event": "report", "trial": trial_id, "step": step, "values": values})
        self._last_snapshot = time.monotonic()

    def close(self) -> None:
        """Snapshot and release the journal file."""
        if self.path is None:
            return
        self.snapshot()
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    # -- the dataset -------------------------------------------------------------------
    def to_dataset(self) -> xr.Dataset:
        """The history as an :class:`xarray.Dataset` (cached until the next append)."""
        if self._dataset is None:
            self._dataset = self._build_dataset()
        return self._dataset

    def _build_dataset(self) -> xr.Dataset:
        records = self.records
        ids = np.array([r["trial"] for r in records], dtype="int64")
        data: dict[str, Any] = {}
        for name, dim in self.space.items():
            values = [r["params"][name] for r in records]
            attrs = {"prior": str(dim)}
            if dim.dtype == "repr":
                data[name] = ("trial", np.array([repr(v) for v in values], dtype=object), attrs)
            elif dim.dtype == "str":
                data[name] = ("trial", np.array(values, dtype=object), attrs)
            else:
                data[name] = ("trial", np.array(values, dtype=dim.dtype), attrs)
        data["objective"] = ("trial", np.array([r["objective"] for r in records], dtype="float64"))
        metric_names = sorted({m for r in records for m in r["metrics"]})
        for metric in metric_names:
            data[metric] = (
                "trial",
                np.array([r["metrics"].get(metric, math.nan) for r in records], dtype="float64"),
            )
        for key in _TIMES:
            data[key] = ("trial", _to_datetime([r[key] for r in records]))
        duration = [
            r["ended"] - r["started"] if r["ended"] is not None and r["started"] is not None else math.nan
            for r in records
        ]
        data["duration"] = ("trial", np.array(duration, dtype="float64"), {"units": "s"})
        for key in _STRINGS:
            data[key] = ("trial", np.array([r[key] or "" for r in records], dtype=object))
        data["attempts"] = ("trial", np.array([r["attempts"] for r in records], dtype="int64"))
        for key in ("parent", "checkpoint_from"):
            data[key] = ("trial", np.array([_id_or_minus(r.get(key)) for r in records], dtype="int64"))
        data["last_step"] = ("trial", np.array([_float(r.get("last_step")) for r in records], dtype="float64"))
        coords: dict[str, Any] = {"trial": ids}
        reports = [self._reports.get(int(t), {}) for t in ids]
        steps = sorted({s for per_trial in reports for s in per_trial})
        if steps:
            names = sorted({n for per_trial in reports for values in per_trial.values() for n in values})
            position = {s: j for j, s in enumerate(steps)}
            for name in names:
                table = np.full((len(ids), len(steps)), math.nan)
                for i, per_trial in enumerate(reports):
                    for s, values in per_trial.items():
                        table[i, position[s]] = values.get(name, math.nan)
                data[f"{REPORTED}{name}"] = (("trial", "step"), table)
            integral = all(float(s).is_integer() for s in steps)
            coords["step"] = np.array(steps, dtype="int64" if integral else "float64")
        return xr.Dataset(data, coords=coords, attrs=self.attrs)


#: prefix of the history's variables of intermediate reports
REPORTED = "reported_"


def _id_or_minus(value: Any) -> int:
    return -1 if value is None else int(value)


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def trial_of(record: Mapping[str, Any]) -> Trial:
    """A stored record as the optimizers see it."""
    return Trial(
        record["trial"],
        dict(record["params"]),
        record["status"],
        record["objective"],
        dict(record["metrics"]),
        parent=record.get("parent"),
        checkpoint=record.get("checkpoint_from"),
        last_step=_float(record.get("last_step")),
    )


def records_from_dataset(ds: xr.Dataset, space: Space) -> list[dict]:
    """Decode a stored dataset back into trial records (Python values)."""
    metrics = [
        v for v in ds.data_vars if v not in space and v not in BOOKKEEPING and v != "objective"
        and ds[v].dims == ("trial",)
    ]
    columns = {name: ds[name].values for name in ds.data_vars if ds[name].dims == ("trial",)}
    reported = {
        str(name)[len(REPORTED):]: ds[name].values
        for name in ds.data_vars
        if str(name).startswith(REPORTED) and ds[name].dims == ("trial", "step")
    }
    steps = ds["step"].values if reported else []
    times = {key: _from_datetime(columns[key]) for key in _TIMES}
    records = []
    for i, trial_id in enumerate(ds["trial"].values):
        params = {}
        for name, dim in space.items():
            value = columns[name][i]
            if dim.dtype == "repr":
                value = ast.literal_eval(str(value))
            elif isinstance(value, np.generic):
                value = value.item()
            params[name] = dim.cast(value) if not isinstance(dim, Categorical) else dim.choices[dim.index(value)]
        record = {
            "trial": int(trial_id),
            "params": params,
            "status": str(columns["status"][i]),
            "objective": float(columns["objective"][i]),
            "metrics": {m: float(columns[m][i]) for m in metrics if not math.isnan(columns[m][i])},
            "attempts": int(columns["attempts"][i]),
        }
        for key in _TIMES:
            record[key] = times[key][i]
        for key in ("worker", "gpu", "error"):
            record[key] = str(columns[key][i]) or None
        for key in ("parent", "checkpoint_from"):
            if key in columns:
                record[key] = None if columns[key][i] < 0 else int(columns[key][i])
        if "last_step" in columns:
            record["last_step"] = float(columns["last_step"][i])
        if reported:
            record["reports"] = [
                [float(step), {name: float(table[i, j]) for name, table in reported.items() if not math.isnan(table[i, j])}]
                for j, step in enumerate(steps)
                if any(not math.isnan(table[i, j]) for table in reported.values())
            ]
        records.append(record)
    return records


def read_journal(path: str) -> list[dict]:
    """Trial events of a journal; a torn last line (a crash mid-write) is skipped."""
    try:
        with open(_journal_path(path), encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return []
    events = []
    for n, line in enumerate(lines):
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            if n != len(lines) - 1:
                raise ValueError(f"{_journal_path(path)}: line {n + 1} is corrupt") from None
            logger.warning("%s: ignoring a torn last line", _journal_path(path))
    return events


def load_history(path: str | os.PathLike) -> tuple[Space, dict, list[dict]]:
    """Read a stored history: its space, its attrs and its trial records.

    Raises
    ------
    FileNotFoundError
        If there is no history at ``path``.
    """
    path = os.fspath(path)
    ds = xr.load_dataset(path, engine=_ENGINE)
    space = Space(json.loads(ds.attrs["space"]))
    records = {r["trial"]: r for r in records_from_dataset(ds, space)}
    reports: dict[int, dict[float, dict]] = {}
    for event in read_journal(path):
        kind = event.pop("event")
        if kind == "trial":
            records[event["trial"]] = event
        elif kind == "report":
            reports.setdefault(event["trial"], {})[float(event["step"])] = event["values"]
    orphans = sorted(set(reports) - set(records))
    if orphans:
        logger.info("%s: dropping the reports of %d trial(s) that never finished", path, len(orphans))
    for trial_id, per_trial in reports.items():
        if trial_id in records:
            merged = {float(s): v for s, v in records[trial_id].get("reports", [])}
            merged.update(per_trial)
            records[trial_id]["reports"] = sorted([s, v] for s, v in merged.items())
    return space, dict(ds.attrs), [records[k] for k in sorted(records)]
