import math
import os

import numpy as np
import pytest

from daskhpo.results import RESERVED, InvalidResult, Result, parse_result


def test_number_dict_and_list_results():
    assert parse_result(1.5) == Result(1.5, {})
    assert parse_result(np.float32(2.0)) == Result(2.0, {})
    assert parse_result(3) == Result(3.0, {})
    assert parse_result({"objective": 0.1, "accuracy": 0.9}) == Result(0.1, {"accuracy": 0.9})
    listed = [
        {"name": "loss", "type": "objective", "value": 0.2},
        {"name": "acc", "type": "statistic", "value": 0.8},
    ]
    assert parse_result(listed) == Result(0.2, {"acc": 0.8})


def test_nan_passes_through_for_the_engine_to_judge():
    objective = parse_result(float("nan")).objective
    assert math.isnan(objective)


@pytest.mark.parametrize(
    "value, message",
    [
        ("0.5", "expected a number"),
        (None, "expected a number"),
        (True, "expected a number"),
        ({"accuracy": 0.9}, "needs the key 'objective'"),
        ({"objective": "low"}, "metric 'objective' must be a real number"),
        ([{"name": "a", "type": "statistic", "value": 1}], "exactly one entry of type 'objective'"),
        ([0.1, 0.2], "{'name', 'type', 'value'} dicts"),
        ({"objective": 1.0, "status": 2.0}, "reserved"),
    ],
)
def test_garbage_is_rejected_with_a_clear_message(value, message):
    with pytest.raises(InvalidResult, match=None) as info:
        parse_result(value)
    assert message in str(info.value)


# -- names that cannot collide -------------------------------------------------------------


def test_a_metric_named_like_a_parameter_is_refused_naming_the_clash():
    with pytest.raises(InvalidResult) as info:
        parse_result({"objective": 1.0, "x": 123.0}, params=["x", "y"])
    message = str(info.value)
    assert "'x'" in message and "parameter" in message and "nothing of it is stored" in message
    with pytest.raises(InvalidResult, match="'x' has the name of a parameter"):
        parse_result({"objective": 1.0, "x": 123.0}, params={"x": 0.5, "y": 1})  # the trial's params dict
    # the same result is fine for a space without x
    assert parse_result({"objective": 1.0, "x": 123.0}, params=["y"]) == Result(1.0, {"x": 123.0})
    listed = [{"name": "loss", "type": "objective", "value": 1}, {"name": "y", "type": "m", "value": 2}]
    with pytest.raises(InvalidResult, match="'y' has the name of a parameter"):
        parse_result(listed, params={"y"})


@pytest.mark.parametrize(
    "metrics, message",
    [
        ({"trial": 1.0}, "reserved by the history"),
        ({"worker": 1.0}, "reserved by the history"),
        ({"reported_loss": 1.0}, "reserved for intermediate reports"),
        ({"a/b": 1.0}, "cannot be stored"),
        ({"": 1.0}, "cannot be stored"),
        ({".": 1.0}, "cannot be stored"),
        ({1: 1.0, "1": 2.0}, "given twice"),
        ({(1, 2): 1.0}, "metric names must be strings"),
    ],
)
def test_names_that_would_overwrite_or_break_the_history_are_refused(metrics, message):
    with pytest.raises(InvalidResult, match=None) as info:
        parse_result({"objective": 0.0, **metrics}, params=["x"])
    assert message in str(info.value)


def test_duplicate_names_in_a_list_result_are_refused():
    listed = [
        {"name": "loss", "type": "objective", "value": 1},
        {"name": "acc", "type": "statistic", "value": 0.5},
        {"name": "acc", "type": "statistic", "value": 0.6},
    ]
    with pytest.raises(InvalidResult, match="'acc' is given twice"):
        parse_result(listed)


# -- awkward values --------------------------------------------------------------------------


class _BadRepr:
    def __repr__(self):
        raise RuntimeError("no repr for you")


@pytest.mark.parametrize(
    "value, message",
    [
        (10**400, "too large to be stored as a float64: an int of about 401 digits"),
        (-(10**5000), "too large"),  # repr() of this would itself raise ValueError
        ({"objective": 0.0, "m": 10**400}, "metric 'm' is too large"),
        (_BadRepr(), "<_BadRepr object>"),
        ({"objective": 0.0, "m": {"a": 1.0}}, "metric 'm' must be a real number, got dict"),
        ({"objective": 0.0, "m": None}, "metric 'm' must be a real number, got NoneType"),
        (np.array([1.0, 2.0]), "expected a number"),
        (np.array(True), "expected a number"),
        (np.bool_(False), "expected a number"),
        (1 + 2j, "expected a number"),
        ("x" * 10_000, "..."),
    ],
    ids=lambda v: type(v).__name__,
)
def test_awkward_values_give_invalid_result_with_a_clear_message(value, message):
    with pytest.raises(InvalidResult) as info:
        parse_result(value)
    assert message in str(info.value)
    assert len(str(info.value)) < 600


@pytest.mark.parametrize(
    "value, expected",
    [
        (np.float16(0.5), 0.5),
        (np.int64(-3), -3.0),
        (np.uint8(7), 7.0),
        (np.array(2.5), 2.5),
        (np.array([4]), 4.0),
        (np.array(3, dtype=np.int32), 3.0),
        (10**300, 1e300),
        (float("inf"), math.inf),
    ],
    ids=lambda v: type(v).__name__,
)
def test_numbers_of_every_kind_are_accepted(value, expected):
    assert parse_result(value) == Result(expected, {})
    assert parse_result({"objective": value, "m": value}) == Result(expected, {"m": expected})


# -- property-based: whatever comes back, a result or InvalidResult --------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

_numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**500), max_value=10**500),
    st.floats(allow_nan=True, allow_infinity=True),
    hnp.from_dtype(np.dtype("float32")),
    hnp.from_dtype(np.dtype("int64")),
    hnp.from_dtype(np.dtype("uint16")),
    hnp.arrays(np.float64, ()),
    hnp.arrays(np.int32, st.sampled_from([(), (1,), (2,)])),
)
_leaves = st.one_of(st.none(), st.booleans(), st.text(max_size=8), st.binary(max_size=4), _numbers)
_names = st.one_of(
    st.sampled_from(["objective", "x", "y", "acc", "status", "reported_acc", "a/b", "", "1"]),
    st.text(max_size=6),
    st.integers(-2, 2),
)
_values = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(_names, inner, max_size=4),
        st.lists(
            st.fixed_dictionaries(
                {"name": _names, "type": st.sampled_from(["objective", "statistic"]), "value": inner}
            ),
            max_size=3,
        ),
    ),
    max_leaves=8,
)

_FAST = settings(max_examples=int(os.environ.get("DASKHPO_HYPOTHESIS_EXAMPLES", 150)), deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FAST
@given(_values)
def test_any_value_is_a_result_or_invalid_result(value):
    params = ("x", "y")
    try:
        result = parse_result(value, params=params)
        objective, metrics = result.objective, result.metrics
    except InvalidResult as exc:
        assert str(exc)
        return
    assert isinstance(objective, float)
    assert all(isinstance(k, str) and isinstance(v, float) for k, v in metrics.items())
    assert not set(metrics) & set(params)
    assert "objective" not in metrics


def _fits_float(value):
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _real(value):
    return float(np.asarray(value).reshape(()))


@_FAST
@given(
    objective=_numbers,
    metrics=st.dictionaries(st.from_regex(r"\A[a-z][a-z0-9_]{0,6}\Z"), _numbers, max_size=3),
)
def test_well_formed_results_are_read_exactly(objective, metrics):
    params = ("x",)
    value = {"objective": objective, **metrics}
    expected_ok = all(
        not isinstance(v, np.ndarray) or v.size == 1 for v in [objective, *metrics.values()]
    ) and all(_fits_float(v) for v in [objective, *metrics.values()] if isinstance(v, int))
    names_ok = all(n not in params and n not in RESERVED and not n.startswith("reported_") for n in metrics)
    if not (expected_ok and names_ok):
        with pytest.raises(InvalidResult):
            parse_result(value, params=params)
        return
    got = parse_result(value, params=params)
    got_objective, got_metrics = got.objective, got.metrics
    np.testing.assert_equal(got_objective, _real(objective))
    assert set(got_metrics) == set(metrics)
    for name, number in metrics.items():
        np.testing.assert_equal(got_metrics[name], _real(number))


def test_a_result_read_already_is_checked_like_any_other():
    good = Result(math.nan, {"m": 1.0}, (0.5,), (1.0, 2.0))
    assert parse_result(good, params=["x"]) == good and not Result(math.nan, {}, (), (1.0, math.nan)).finite
    for bad, message in [
        (Result(1.0, {"x": 1.0}), "has the name of a parameter"),
        (Result(1.0, {}, (math.nan,)), r"constraints\[0\] is nan"),
        (Result(1.0, {"m": "a"}), "must be a real number"),
        (Result(math.nan, {}, (), ("a",)), r"values\[0\]"),
    ]:
        with pytest.raises(InvalidResult, match=message):
            parse_result(bad, params=["x"])


def test_several_objectives_are_read_into_values_in_their_order():
    result = parse_result({"b": 2, "a": 1.0, "m": 3, "constraints": [-1]}, params=["x"], objectives=["a", "b"])
    assert result == Result(math.nan, {"m": 3.0}, (-1.0,), (1.0, 2.0)) and result.finite
    with pytest.raises(InvalidResult, match=r"objective\(s\) \['b'\] missing"):
        parse_result({"a": 1.0}, objectives=["a", "b"])
    with pytest.raises(InvalidResult, match="has the key\\(s\\) \\['objective'\\]"):
        parse_result({"a": 1.0, "b": 1.0, "objective": 0.0}, objectives=["a", "b"])


class _RaisingMapping(dict):
    def __getitem__(self, key):
        raise RuntimeError("no item for you")


class _OddEq(str):
    def __eq__(self, other):
        raise TypeError("cannot compare")

    __hash__ = str.__hash__


@pytest.mark.parametrize(
    "value, message",
    [
        # before: ValueError: The truth value of an array with more than one element is ambiguous
        ([{"name": "a", "type": np.array(["objective", "x"]), "value": 1.0}], "'type' of list entry 'a' must be a string"),
        ([{"name": "a", "type": np.array("objective"), "value": 1.0}], "or another), got ndarray"),
        ([{"name": "a", "type": None, "value": 1.0}], "or another), got NoneType"),
        ([{"name": "a", "type": ["objective"], "value": 1.0}], "or another), got list"),
        (_RaisingMapping(objective=1.0), "could not be read as a result (RuntimeError: no item for you)"),
        ([{"name": "a", "type": _OddEq("objective"), "value": 1.0}], "could not be read as a result (TypeError"),
    ],
    ids=["array-type", "0d-array-type", "none-type", "list-type", "raising-mapping", "odd-eq"],
)
def test_malformed_list_and_mapping_results_give_invalid_result(value, message):
    with pytest.raises(InvalidResult) as info:
        parse_result(value)
    assert message in str(info.value)
