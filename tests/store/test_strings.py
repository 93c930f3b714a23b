"""Any string a user or an objective gives is stored and read back unchanged.

NULs and lone surrogates (which HDF5 cannot hold), ``""`` (which a conditional column
used for "inactive"), backslashes and the escape scheme's own tokens; then a
property-based round trip of strings, numbers and conditional values through storage,
close, and build/load again.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import daskhpo
from daskhpo.engine import FakeExecutor
from daskhpo.space import Categorical

try:
    from daskhpo.store.dataset import escape, unescape
except ImportError:  # (the code before the escaping, to see these tests fail)
    escape = unescape = None

NASTY = ["b\x00c", "\x00", "", "\\", "\\e", "\\0", "\\u0041", "\ud800", "a\udfffb", "é😀", "\\\\0", "\\u00"]


@pytest.mark.parametrize("text", NASTY)
def test_escape_is_reversible(text):
    assert unescape(escape(text)) == text
    assert "\x00" not in escape(text) and escape(text) != ""


def as_json(record) -> str:
    """A record, comparable (NaN equal to NaN, -0.0 apart from 0.0), times left out (see :func:`times`)."""
    data = record.to_json()
    for key in ("submitted", "started", "ended"):
        data[key] = None
    return json.dumps(data, sort_keys=True)


def times(records) -> list:
    """The times of ``records`` (stored as datetime64[ns]: to the microsecond)."""
    return [[None if t is None else round(t, 6) for t in (r.submitted, r.started, r.ended)] for r in records]


def same_times(a, b) -> bool:
    return all(x == y or abs(x - y) < 1e-5 for ra, rb in zip(times(a), times(b), strict=True)
               for x, y in zip(ra, rb, strict=True))


def raise_message(x, kind):
    if kind.startswith("err"):
        raise ValueError(f"parse error at {kind!r}: header b'\\x89PNG\x00\x00' \x00 end")
    return x


def test_a_nul_in_a_choice_and_in_an_error_is_stored_and_resumed(tmp_path):
    path = tmp_path / "nul.nc"
    space = {"x": "uniform(0, 1)", "kind": Categorical(["b\x00c", "err\x00", "plain"])}
    exp = daskhpo.build_experiment("nul", space, storage=path, seed=0, snapshot_interval=0)
    for kind in ["b\x00c", "err\x00", "plain", "err\x00"]:
        exp.enqueue({"kind": kind})
    exp.run(FakeExecutor(raise_message), max_trials=8, max_broken=10, quarantine_after=None)
    before = [as_json(r) for r in exp.records()]
    assert any("\x00" in (r.error or "") for r in exp.records())
    exp.close()
    assert [as_json(r) for r in daskhpo.load_experiment(path).records()] == before
    assert same_times(daskhpo.load_experiment(path).records(), exp.records())
    again = daskhpo.build_experiment("nul", space, storage=path)  # resumable
    again.run(FakeExecutor(raise_message), max_trials=10, max_broken=10, quarantine_after=None)
    again.close()
    after = daskhpo.load_experiment(path).records()
    assert [as_json(r) for r in after[: len(before)]] == before and len(after) >= 10


def test_an_empty_string_choice_is_not_inactive(tmp_path):
    path = tmp_path / "empty.nc"
    space = {"model": "choices(['a', 'b'])", "suffix": "choices(['', '_v2'], when={'model': 'a'})"}
    exp = daskhpo.build_experiment("empty", space, storage=path, seed=0)
    for params in [{"model": "a", "suffix": ""}, {"model": "a", "suffix": "_v2"}, {"model": "b"},
                   {"model": "a", "suffix": ""}]:
        exp.enqueue(params)
    exp.run(FakeExecutor(lambda model, suffix=None: float(len(model + (suffix or "")))), max_trials=8)
    params = [r.params for r in exp.records()]
    assert {"model": "a", "suffix": ""} in params and {"model": "b"} in params
    exp.close()
    assert [r.params for r in daskhpo.load_experiment(path).records()] == params


# -- the property-based round trip ----------------------------------------------------------
strings = st.one_of(
    st.text(st.characters(codec=None, exclude_categories=()), max_size=12),
    st.lists(st.sampled_from(NASTY + ["a", " "]), max_size=5).map("".join),
)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0, 1e308, -1e308, 5e-324, 2.0**53 + 1]),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(choices=st.lists(strings, min_size=1, max_size=4, unique=True), name=strings,
       # a metric of NaN reads back as absent (both are NaN in its column): not drawn
       values=st.lists(st.tuples(numbers, numbers.filter(lambda v: not math.isnan(v)), strings), min_size=1,
                       max_size=4),
       data=st.data())
def test_round_trip_of_strings_numbers_and_conditional_values(tmp_path_factory, choices, name, values, data):
    path = tmp_path_factory.mktemp("rt") / "rt.nc"
    space = {
        "kind": Categorical(choices),
        "gate": "choices([True, False])",
        "tag": Categorical(choices, when={"gate": True}),
        "n": "randint(-5, 5, when={'gate': False})",
        "x": "uniform(-1e300, 1e300)",
    }
    planned = []
    for objective, metric, message in values:
        gate = data.draw(st.booleans())
        params = {"kind": data.draw(st.sampled_from(choices)), "gate": gate}
        params.update({"tag": data.draw(st.sampled_from(choices))} if gate else {"n": data.draw(st.integers(-5, 5))})
        planned.append((params, objective, metric, message))
    by_kind = {}

    def objective(kind, gate, x, tag=None, n=None):
        if (kind, gate, tag, n) not in by_kind:  # the optimizer's own suggestion, after the planned
            return 0.0
        params, value, metric, message = by_kind[(kind, gate, tag, n)]
        if message.startswith("\x00") or message == "":
            raise ValueError(message)
        return {"objective": value, "metric": metric}

    for params, *rest in planned:
        by_kind[(params["kind"], params["gate"], params.get("tag"), params.get("n"))] = (params, *rest)
    exp = daskhpo.build_experiment(name, space, storage=path, seed=0)
    for params, *_ in planned:
        exp.enqueue(params)
    exp.run(FakeExecutor(objective), max_trials=len(planned) + 1, max_broken=100, quarantine_after=None)
    before = [as_json(r) for r in exp.records()]
    exp.close()
    loaded = daskhpo.load_experiment(path)
    assert loaded.name == name
    assert [as_json(r) for r in loaded.records()] == before
    resumed = daskhpo.build_experiment(name, space, storage=path)
    assert [as_json(r) for r in resumed.records()] == before
    resumed.close()
