import math

import numpy as np
import pytest

import daskhpo
from daskhpo.space import Categorical, Fidelity, Integer, Real, Space, parse_dimension


@pytest.mark.parametrize(
    "spec, cls",
    [
        ("uniform(-5, 5)", Real),
        ("loguniform(1e-5, 1)", Real),
        ("normal(0, 2)", Real),
        ("uniform(1, 10, discrete=True)", Integer),
        ("randint(1, 10)", Integer),
        ("loguniform(1, 1024, discrete=True)", Integer),
        ("choices(['a', 'b'])", Categorical),
        ("choices({'a': 0.7, 'b': 0.3})", Categorical),
        ("fidelity(1, 81, base=3)", Fidelity),
    ],
)
def test_parse_round_trips_through_canonical_string(spec, cls):
    dim = parse_dimension(spec, "p")
    assert isinstance(dim, cls)
    again = parse_dimension(str(dim), "p")
    assert str(again) == str(dim)


@pytest.mark.parametrize(
    "spec, problem",
    [
        ("uniform(5, -5)", "low must be < high"),
        ("uniform(1, 1)", "low must be < high"),
        ("loguniform(0, 1)", "must be positive"),
        ("loguniform(-1, 1)", "must be positive"),
        ("normal(0, -1)", "sigma must be positive"),
        ("gauss(0, 1)", "unknown prior 'gauss'"),
        ("uniform(0, 1, bins=3)", "unknown option(s) ['bins']"),
        ("uniform(0, 1", "malformed"),
        ("uniform(0, x)", "must be literals"),
        ("__import__('os').system('true')", "is not a prior call"),
        ("uniform(0)", "takes 2 arguments"),
        ("randint(0.5, 3)", "whole numbers"),
        ("choices([])", "at least one"),
        ("choices(['a', 'a'])", "not unique"),
        ("choices('ab')", "list or a dict"),
        ("uniform(0, 1, precision=0)", "precision"),
        ("uniform(0, 1, default_value=2)", "default_value=2 is not in"),
        ("fidelity(0, 10)", "0 < low < high"),
        ("uniform(0, float('inf'))", "must be literals"),
        (42, "expected a prior string"),
    ],
)
def test_bad_specs_raise_value_error_naming_parameter(spec, problem):
    with pytest.raises(ValueError) as info:
        Space({"learning_rate": spec})
    assert "learning_rate" in str(info.value)
    assert problem in str(info.value)


def test_parsing_never_evaluates(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(ValueError):
        Space({"x": f"uniform(0, open({str(marker)!r}, 'w'))"})
    assert not marker.exists()


def test_python_objects_equal_strings():
    objects = Space({"x": daskhpo.uniform(-5, 5), "n": daskhpo.randint(1, 4), "c": daskhpo.choices(["a", "b"])})
    strings = Space({"x": "uniform(-5, 5)", "n": "randint(1, 4)", "c": "choices(['a', 'b'])"})
    assert objects == strings


def test_samples_are_valid_and_seeded():
    space = Space(
        {
            "x": "uniform(-5, 5)",
            "lr": "loguniform(1e-5, 1)",
            "n": "randint(1, 3)",
            "c": "choices([None, 'balanced'])",
            "f": "fidelity(1, 81, base=3)",
        }
    )
    draws = [space.sample(np.random.default_rng(s)) for s in range(300)]
    for d in draws:
        assert space.validate(d) == d
        assert d["f"] == 81  # fidelity-unaware sampling runs at full budget
    assert {d["n"] for d in draws} == {1, 2, 3}  # randint's high is inclusive
    assert {d["c"] for d in draws} == {None, "balanced"}
    assert space.sample(np.random.default_rng(7)) == space.sample(np.random.default_rng(7))


def test_loguniform_is_uniform_in_log_space():
    dim = parse_dimension("loguniform(1e-4, 1)", "lr")
    logs = np.log10(dim.sample(np.random.default_rng(0), size=4000))
    assert np.all((-4 <= logs) & (logs <= 0))
    assert abs(np.mean(logs) + 2) < 0.1  # a uniform draw in linear space would sit near -0.3


def test_weighted_choices_follow_probabilities():
    dim = parse_dimension("choices({'a': 0.7, 'b': 0.3})", "c")
    draws = dim.sample(np.random.default_rng(0), size=5000)
    assert abs(draws.count("a") / 5000 - 0.7) < 0.03


@pytest.mark.parametrize(
    "spec, values",
    [
        ("uniform(-5, 5)", [-5.0, 0.0, 1.5, 5.0]),
        ("loguniform(1e-5, 1)", [1e-5, 3e-3, 1.0]),
        ("normal(1, 2)", [-3.0, 1.0, 4.0]),
        ("randint(1, 10)", [1, 5, 10]),
        ("loguniform(1, 1000, discrete=True)", [1, 10, 999, 1000]),
        ("choices(['a', 'b', 'c'])", ["a", "b", "c"]),
        ("choices({'x': 0.9, 'y': 0.1})", ["x", "y"]),
    ],
)
def test_unit_interval_round_trip(spec, values):
    dim = parse_dimension(spec, "p")
    for v in values:
        u = dim.to_unit(v)
        assert 0.0 <= u <= 1.0
        back = dim.from_unit(u)
        assert back == pytest.approx(v, rel=1e-9) if isinstance(v, float) else back == v


def test_from_unit_always_valid():
    space = Space({"x": "uniform(0, 1)", "n": "randint(0, 3)", "c": "choices(['a', 'b'])", "m": "normal(0, 1)"})
    for u in np.linspace(0, 1, 51):
        assert space.validate(space.from_unit([u] * 4))


def test_precision_rounds_significant_digits():
    dim = parse_dimension("loguniform(1e-5, 1, precision=2)", "lr")
    for v in dim.sample(np.random.default_rng(0), size=50):
        assert float(f"{v:.2g}") == v


def test_validate_rejects_out_of_range_and_wrong_keys():
    space = Space({"x": "uniform(0, 1)", "n": "randint(1, 3)"})
    with pytest.raises(ValueError, match="parameter 'x'"):
        space.validate({"x": 2.0, "n": 1})
    with pytest.raises(ValueError, match="parameter 'n'"):
        space.validate({"x": 0.5, "n": 1.5})
    with pytest.raises(ValueError, match="missing \\['n'\\], unknown \\['z'\\]"):
        space.validate({"x": 0.5, "z": 1})
    with pytest.raises(ValueError, match="parameter 'x'"):
        space.validate({"x": math.nan, "n": 1})


def test_defaults_only_when_every_dimension_has_one():
    assert Space({"x": "uniform(0, 1, default_value=0.5)", "n": "randint(1, 3)"}).defaults() is None
    space = Space({"x": "uniform(0, 1, default_value=0.5)", "n": "randint(1, 3, default_value=2)"})
    assert space.defaults() == {"x": 0.5, "n": 2}


def test_names_must_be_identifiers():
    with pytest.raises(ValueError, match="'my-lr'"):
        Space({"my-lr": "uniform(0, 1)"})
