"""The history's dataset: how finished trials and their reports become an
:class:`xarray.Dataset` (a snapshot's content), and back.

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
* preemptions, once some trial was preempted (its worker left; it resumed elsewhere from
  its checkpoint): ``preempted`` (``int64``, per trial: how many times), and, with dims
  ``("trial", "preemption")``, ``preempted_time`` (``datetime64``: when each preempted
  attempt stopped; NaT beyond a trial's count) and ``preempted_step`` (``float64``: the
  last step it had reported; NaN for none).  Files without them read back as trials never
  preempted;
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

Strings HDF5 cannot hold
------------------------
HDF5 strings are NUL-terminated UTF-8: a NUL character, or a lone surrogate (which Python
strings may hold, e.g. from :func:`os.fsdecode`), cannot be written.  And a conditional
parameter's string column marks an inactive trial with ``""``, so a choice ``""`` would
read back as inactive.  So a string column that holds such a character, or an empty
string where ``""`` also means "none" (conditional parameters; ``worker``, ``gpu``,
``error``), is written *escaped*, and gets the variable attr ``daskhpo_escape =
"backslash-1"``:

* ``\\`` is a backslash, ``\\0`` a NUL, ``\\uXXXX`` (4 lowercase hex digits) the code point
  U+XXXX (every surrogate), ``\\e`` nothing (the whole value ``\\e`` is the empty string);
  every other character is itself;
* ``""`` is the missing value (inactive, no error).

Columns without the attr (all others, and every file of earlier versions) hold their
strings as they are.  A string attr of the dataset that needs escaping is escaped the same
way and its name listed in the attr ``daskhpo_escaped_attrs`` (JSON).  The escaping is
reversible: what a trial held is read back unchanged.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from ..objectives import objectives_from_attrs, variable
from ..records import ReportRecord, TrialRecord
from ..results import BOOKKEEPING, CONSTRAINT, RESERVED_PREFIXES
from ..space import Categorical, Space
from .errors import PARSE_ERRORS, CorruptStorage, open_snapshot

__all__ = ["REPORTED", "read_snapshot", "to_dataset"]

#: prefix of the history's variables of intermediate reports
REPORTED = RESERVED_PREFIXES[0]
_TIMES = ("submitted", "started", "ended")
_STRINGS = ("status", "worker", "gpu", "error")
_IDS = ("parent", "checkpoint_from")

#: the variable attr of an escaped string column, and its scheme (see the module's docstring)
ESCAPE_ATTR, ESCAPE_SCHEME = "daskhpo_escape", "backslash-1"
#: the dataset attr listing the escaped string attrs (JSON)
ESCAPED_ATTRS = "daskhpo_escaped_attrs"
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
_TO_ESCAPE = re.compile(r"[\\\x00\ud800-\udfff]")
_ESCAPED = re.compile(r"\\(\\|0|e|u[0-9a-f]{4})")
#: attrs whose value is JSON written by daskhpo, and the type it must hold
_JSON_ATTRS = {"space": dict, "algorithm_config": dict, "algorithm_history": list, "objectives": dict,
               "quarantined": list}


def _escape_char(match: re.Match) -> str:
    c = match.group()
    return "\\\\" if c == "\\" else "\\0" if c == "\x00" else f"\\u{ord(c):04x}"


def escape(value: str) -> str:
    """``value`` as an escaped column holds it (see the module's docstring)."""
    return _TO_ESCAPE.sub(_escape_char, value) if value else "\\e"


def _unescape_token(match: re.Match) -> str:
    token = match.group(1)
    return "\\" if token == "\\" else "\x00" if token == "0" else "" if token == "e" else chr(int(token[1:], 16))


def unescape(stored: str) -> str:
    """The string :func:`escape` made ``stored`` from."""
    return _ESCAPED.sub(_unescape_token, stored)


def _string_column(values: list[str | None], nullable: bool) -> tuple[np.ndarray, dict[str, str]]:
    """A column of strings (``None``: missing, stored ``""``) and its attrs: escaped only when
    a value cannot be stored as it is, or, in a ``nullable`` column, a value is ``""``."""
    escaped = any(v is not None and _UNSTORABLE.search(v) for v in values) or (
        nullable and any(v == "" for v in values))
    if not escaped:
        return np.array(["" if v is None else v for v in values], dtype=object), {}
    column = np.array(["" if v is None else escape(v) for v in values], dtype=object)
    return column, {ESCAPE_ATTR: ESCAPE_SCHEME}


def _read_strings(var: xr.DataArray, nullable: bool) -> list[str | None]:
    """Read back :func:`_string_column` (``None`` where missing; in a ``nullable`` column of
    an earlier version, ``""`` is missing)."""
    raw = [v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else str(v) for v in var.values]
    if var.attrs.get(ESCAPE_ATTR) == ESCAPE_SCHEME:
        return [None if s == "" else unescape(s) for s in raw]
    return [None if nullable and s == "" else s for s in raw]


def _file_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The dataset attrs with the strings HDF5 cannot hold escaped (listed in ``ESCAPED_ATTRS``)."""
    out = dict(attrs)
    escaped = sorted(k for k, v in out.items() if isinstance(v, str) and _UNSTORABLE.search(v))
    for key in escaped:
        out[key] = escape(out[key])
    if escaped:
        out[ESCAPED_ATTRS] = json.dumps(escaped)
    return out


def _read_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Read back :func:`_file_attrs`; the JSON attrs are checked (``ValueError`` if not JSON of their type)."""
    out = dict(attrs)
    for key in json.loads(out.pop(ESCAPED_ATTRS, "[]")):
        out[key] = unescape(str(out[key]))
    for key, kind in _JSON_ATTRS.items():
        if key in out and not isinstance(json.loads(out[key]), kind):
            raise ValueError(f"attr {key!r} is not a JSON {kind.__name__}")
    return out


def _to_datetime(seconds: list[float | None]) -> np.ndarray:
    ns = [np.datetime64("NaT") if s is None or not math.isfinite(s) else np.datetime64(int(s * 1e9), "ns") for s in seconds]
    return np.array(ns, dtype="datetime64[ns]")


def _from_datetime(values: np.ndarray) -> list[float | None]:
    return [None if np.isnat(v) else v.astype("int64") / 1e9 for v in values.astype("datetime64[ns]")]


def to_dataset(space: Space, attrs: Mapping[str, Any], records: list[TrialRecord],
               reports: Mapping[int, Mapping[float, ReportRecord]]) -> xr.Dataset:
    """The dataset of finished ``records`` (by trial id) and their ``reports`` (trial -> step -> report)."""
    ids = np.array([r.trial for r in records], dtype="int64")
    data: dict[str, Any] = {}
    for name, dim in space.items():
        prior = {"prior": str(dim)}
        if dim.when is not None:
            column, extra = _conditional_column(dim, [r.params.get(name, _INACTIVE) for r in records])
            data[name] = ("trial", column, {**prior, **extra})
            continue
        values = [r.params[name] for r in records]
        if dim.dtype == "repr":
            data[name] = ("trial", np.array([repr(v) for v in values], dtype=object), prior)
        elif dim.dtype == "str":
            column, extra = _string_column(values, nullable=False)
            data[name] = ("trial", column, {**prior, **extra})
        else:
            data[name] = ("trial", np.array(values, dtype=dim.dtype), prior)
    objectives = objectives_from_attrs(attrs)
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
        data[key] = ("trial", *_string_column([getattr(r, key) for r in records], nullable=key != "status"))
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
    n_preempted = max((len(r.preempted) for r in records), default=0)
    if n_preempted:
        data["preempted"] = ("trial", np.array([len(r.preempted) for r in records], dtype="int64"))
        padded = [list(r.preempted) + [(None, math.nan)] * (n_preempted - len(r.preempted)) for r in records]
        times = _to_datetime([t for row in padded for t, _ in row]).reshape(len(records), n_preempted)
        data["preempted_time"] = (("trial", "preemption"), times)
        data["preempted_step"] = (("trial", "preemption"),
                                  np.array([[s for _, s in row] for row in padded], dtype="float64"))
    coords: dict[str, Any] = {"trial": ids}
    per_trial_reports = [reports.get(int(t), {}) for t in ids]
    steps = sorted({s for per_trial in per_trial_reports for s in per_trial})
    if steps:
        names = sorted({n for per_trial in per_trial_reports for r in per_trial.values() for n in r.values})
        position = {s: j for j, s in enumerate(steps)}
        order = np.full((len(ids), len(steps)), -1, dtype="int64")
        tables = {name: np.full((len(ids), len(steps)), math.nan) for name in names}
        for i, per_trial in enumerate(per_trial_reports):
            for s, report in per_trial.items():
                order[i, position[s]] = report.seq
                for name, value in report.values.items():
                    tables[name][i, position[s]] = value
        for name, table in tables.items():
            data[f"{REPORTED}{name}"] = (("trial", "step"), table)
        data["report_order"] = (("trial", "step"), order)
        integral = all(float(s).is_integer() for s in steps)
        coords["step"] = np.array(steps, dtype="int64" if integral else "float64")
    return xr.Dataset(data, coords=coords, attrs=_file_attrs(attrs))


#: a conditional parameter's value in a trial where it is inactive
_INACTIVE = object()


def _conditional_column(dim: Any, values: list) -> tuple[np.ndarray, dict[str, str]]:
    """A conditional parameter's column and its attrs: numbers as float64 with NaN where
    inactive; other values as strings (``str`` choices as they are, ``bool`` and mixed ones
    by ``repr``), empty where inactive (escaped when a choice is ``""``)."""
    if dim.dtype in ("float64", "int64"):
        return np.array([math.nan if v is _INACTIVE else float(v) for v in values], dtype="float64"), {}
    if dim.dtype == "str":
        return _string_column([None if v is _INACTIVE else v for v in values], nullable=True)
    return _string_column([None if v is _INACTIVE else repr(v) for v in values], nullable=True)


def _conditional_value(dim: Any, value: Any) -> Any:
    """Read back :func:`_conditional_column` (strings through :func:`_read_strings`, ``None``
    where inactive): the value, or ``_INACTIVE``."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return _INACTIVE
    if isinstance(value, str):
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
    columns: dict[str, Any] = {name: ds[name].values for name in per_trial}
    for name, dim in space.items():  # strings as they were given (see the module's docstring)
        if dim.dtype == "str" or (dim.when is not None and dim.dtype not in ("float64", "int64")):
            columns[name] = _read_strings(ds[name], nullable=dim.when is not None)
    for key in _STRINGS:
        columns[key] = _read_strings(ds[key], nullable=key != "status")
    reported = {
        str(name)[len(REPORTED):]: ds[name].values
        for name in ds.data_vars
        if str(name).startswith(REPORTED) and ds[name].dims == ("trial", "step")
    }
    steps = ds["step"].values if reported else []
    report_order = ds["report_order"].values if "report_order" in ds else None
    times = {key: _from_datetime(columns[key]) for key in _TIMES}
    preempted = _preemptions(ds)
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
        fields.update({key: columns[key][i] for key in ("worker", "gpu", "error")})
        fields.update({key: None if columns[key][i] < 0 else int(columns[key][i]) for key in _IDS if key in columns})
        if "last_step" in columns:
            fields["last_step"] = float(columns["last_step"][i])
        events.append(TrialRecord(
            trial=int(trial_id),
            params=params,
            status=columns["status"][i],
            objective=float(columns["objective"][i]) if "objective" in columns else math.nan,
            metrics={m: float(columns[m][i]) for m in metrics if not math.isnan(columns[m][i])},
            attempts=int(columns["attempts"][i]),
            seq=int(columns["order"][i]) if "order" in columns else -1,
            constraints=tuple(float(columns[c][i]) for c in constraint_names if not math.isnan(columns[c][i])),
            values=_values([float(columns[n][i]) for n in objectives]),
            preempted=preempted[i] if preempted else (),
            **fields,
        ))
        for j, step in enumerate(steps):
            values = {name: float(table[i, j]) for name, table in reported.items() if not math.isnan(table[i, j])}
            if values:
                seq = int(report_order[i, j]) if report_order is not None else -1
                events.append(ReportRecord(int(trial_id), float(step), values, seq))
    return events


def _preemptions(ds: xr.Dataset) -> list[tuple[tuple[float, float], ...]]:
    """Each trial's ``(time, step)`` preemptions, or ``[]`` for a file without them."""
    if "preempted" not in ds or "preempted_time" not in ds:
        return []
    counts = ds["preempted"].values
    times = ds["preempted_time"].values
    steps = ds["preempted_step"].values
    out = []
    for i, count in enumerate(counts):
        row = _from_datetime(times[i])
        out.append(tuple((math.nan if row[j] is None else row[j], float(steps[i, j])) for j in range(int(count))))
    return out


def read_snapshot(path: str | os.PathLike) -> tuple[Space, dict, list[TrialRecord | ReportRecord]]:
    """Read a snapshot file alone: its space, attrs and events (no journal).

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    daskhpo.store.errors.CorruptStorage
        An ``OSError`` naming the file, when it is not a readable netCDF-4 file
        (truncated, say) or not a history daskhpo wrote (an attr or a variable missing or
        unreadable); the file is left untouched.
    """
    path = os.fspath(path)
    ds = open_snapshot(path)
    if "space" not in ds.attrs:
        raise CorruptStorage(path, "a netCDF file but not a daskhpo history (no 'space' attribute)")
    try:
        attrs = _read_attrs(ds.attrs)
        space = Space(json.loads(attrs["space"]))
        return space, attrs, _events_from_dataset(ds, space)
    except PARSE_ERRORS as exc:
        raise CorruptStorage(path, f"not a history daskhpo wrote: {type(exc).__name__}: {exc}") from exc
