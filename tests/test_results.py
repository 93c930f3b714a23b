import math

import numpy as np
import pytest

from daskhpo.results import InvalidResult, parse_result


def test_number_dict_and_list_results():
    assert parse_result(1.5) == (1.5, {})
    assert parse_result(np.float32(2.0)) == (2.0, {})
    assert parse_result(3) == (3.0, {})
    assert parse_result({"objective": 0.1, "accuracy": 0.9}) == (0.1, {"accuracy": 0.9})
    listed = [
        {"name": "loss", "type": "objective", "value": 0.2},
        {"name": "acc", "type": "statistic", "value": 0.8},
    ]
    assert parse_result(listed) == (0.2, {"acc": 0.8})


def test_nan_passes_through_for_the_engine_to_judge():
    objective, _ = parse_result(float("nan"))
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
