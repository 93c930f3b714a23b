"""Search spaces: priors, safe parsing of prior strings, sampling and the unit cube.

A space maps parameter names to dimensions.  Each dimension can

* draw values with a seeded :class:`numpy.random.Generator`,
* map a value to the unit interval and back (what model-based optimizers work in),
* validate a value, and
* print itself as the canonical string it was parsed from (what the history stores).

Strings such as ``"loguniform(1e-5, 1)"`` are parsed with :mod:`ast`: only a call of a
known prior with literal arguments is accepted, nothing is ever evaluated.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import special

__all__ = [
    "Dimension",
    "Real",
    "Integer",
    "Categorical",
    "Fidelity",
    "Space",
    "uniform",
    "loguniform",
    "normal",
    "randint",
    "choices",
    "fidelity",
    "parse_dimension",
]


def _fmt(value: Any) -> str:
    """Format a literal so that :func:`ast.literal_eval` gives it back unchanged."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


#: integer values (bounds, choices) must fit the history's int64 variables
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
#: float64 has at most 17 significant decimal digits: more precision is no rounding
_MAX_DIGITS = 17


def _as_float(value: Any) -> float | None:
    """``float(value)`` for a real number; ``None`` for anything else or one too large."""
    if not _is_number(value):
        return None
    try:
        return float(value)
    except (OverflowError, TypeError, ValueError):
        return None


def _is_finite_number(value: Any) -> bool:
    x = _as_float(value)
    return x is not None and math.isfinite(x)


def _is_whole(value: Any) -> bool:
    """Whether ``value`` is an integer, or a finite float with an integral value."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return True
    return _is_finite_number(value) and float(value).is_integer()


def _fits_int64(value: Any) -> bool:
    return _INT64_MIN <= int(value) <= _INT64_MAX


def _show(value: Any) -> str:
    """A short ``repr`` for messages that never raises (huge ints, broken ``__repr__``)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**30:
        return f"<an int of about {int(abs(value).bit_length() * math.log10(2)) + 1} digits>"
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__} object>"
    return text if len(text) <= 120 else text[:117] + "..."


class Dimension:
    """One named parameter of a search space.

    Subclasses implement sampling, the unit-interval mapping and validation.

    Attributes
    ----------
    name : str
        The parameter name (set when the dimension is placed in a :class:`Space`).
    default_value : object or None
        A value evaluated first when every dimension of the space has one.
    """

    prior: str = ""
    #: numpy dtype of the values in the history
    dtype: str = "float64"

    def __init__(self, *, default_value: Any = None, name: str = "", when: Any = None) -> None:
        self.name = name
        self.default_value = default_value
        #: the conditions under which the parameter exists: parent name -> the parent's
        #: values that activate it (every one must hold); ``None`` for an unconditional one
        self.when: dict[str, list[Any]] | None = None
        if when is not None:
            self.when = self._check_when(when)

    def _check_when(self, when: Any) -> dict[str, list[Any]]:
        if not isinstance(when, Mapping) or not when:
            raise self._error(f"when= takes a non-empty dict of parent name -> value(s), got {_show(when)}")
        out = {}
        for parent, values in when.items():
            if not isinstance(parent, str):
                raise self._error(f"when= parent names must be strings, got {_show(parent)}")
            values = list(values) if isinstance(values, (list, tuple)) else [values]
            if not values:
                raise self._error(f"when={{{parent!r}: []}} can never hold")
            out[parent] = values
        return out

    # -- helpers shared by subclasses -------------------------------------------------
    def _error(self, problem: str) -> ValueError:
        label = f"parameter {self.name!r}" if self.name else "dimension"
        return ValueError(f"{label}: {problem}")

    def _check_default(self) -> None:
        if self.default_value is not None and not self.contains(self.default_value):
            default, self.default_value = self.default_value, None  # describe the prior without it
            prior = str(self)
            raise self._error(f"default_value={_show(default)} is not in {prior}")

    def _unit(self, u: Any) -> float:
        """A coordinate of the unit interval, clamped; ``ValueError`` for NaN or non-numbers."""
        x = _as_float(u)
        if x is None or math.isnan(x):
            raise self._error(f"unit-interval coordinate {_show(u)} is not a number in [0, 1]")
        return min(max(x, 0.0), 1.0)

    def _options(self) -> str:
        text = "" if self.default_value is None else f", default_value={_fmt(self.default_value)}"
        if self.when is not None:
            text += f", when={_fmt(self.when)}"
        return text

    # -- interface -------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator, size: int | None = None) -> Any:
        """Draw one value (or ``size`` values as a list) from the prior."""
        u = rng.random(size)
        if size is None:
            return self.from_unit(float(u))
        return [self.from_unit(float(x)) for x in u]

    def to_unit(self, value: Any) -> float:
        """Map a value to ``[0, 1]``."""
        raise NotImplementedError

    def from_unit(self, u: float) -> Any:
        """Map a point of ``[0, 1]`` to a valid value."""
        raise NotImplementedError

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a valid value of this dimension."""
        raise NotImplementedError

    def validate(self, value: Any) -> Any:
        """Return ``value`` cast to this dimension's type, or raise ``ValueError``."""
        if not self.contains(value):
            raise self._error(f"{_show(value)} is not in {self}")
        return self.cast(value)

    def cast(self, value: Any) -> Any:
        """Convert a valid value to its plain Python type."""
        return value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dimension) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}: {self}>"


class Real(Dimension):
    """A continuous dimension: ``uniform``, ``loguniform`` or ``normal``.

    Parameters
    ----------
    low, high : float
        Bounds (for ``normal``: the mean and the standard deviation).
    prior : {"uniform", "loguniform", "normal"}
    precision : int, optional
        Significant digits kept in sampled values.
    default_value : float, optional
    """

    def __init__(
        self,
        low: float,
        high: float,
        prior: str = "uniform",
        *,
        precision: int | None = None,
        default_value: float | None = None,
        name: str = "",
        when: Any = None,
    ) -> None:
        super().__init__(default_value=default_value, name=name, when=when)
        self.prior = prior
        if prior not in ("uniform", "loguniform", "normal"):
            raise self._error(f"unknown real prior {prior!r}")
        if not (_is_number(low) and _is_number(high)):
            raise self._error(f"{prior} bounds must be numbers, got {_show(low)}, {_show(high)}")
        if not (_is_finite_number(low) and _is_finite_number(high)):
            raise self._error(f"{prior} bounds must be finite, got {_show(low)}, {_show(high)}")
        self.low, self.high = float(low), float(high)
        if prior == "normal":
            if self.high <= 0:
                raise self._error(f"normal sigma must be positive, got {high!r}")
            if not math.isfinite(abs(self.low) + 40 * self.high):
                raise self._error(f"normal({low!r}, {high!r}) draws values beyond the float64 range")
        elif self.low >= self.high:
            raise self._error(f"low must be < high, got low={low!r}, high={high!r}")
        elif prior == "uniform" and not math.isfinite(self.high - self.low):
            raise self._error(f"uniform({low!r}, {high!r}) is wider than the float64 range")
        if prior == "loguniform" and self.low <= 0:
            raise self._error(f"loguniform bounds must be positive, got low={low!r}")
        if precision is not None and (
            not isinstance(precision, int) or isinstance(precision, bool) or precision < 1
        ):
            raise self._error(f"precision must be a positive integer, got {_show(precision)}")
        self.precision = precision
        self._check_default()

    @property
    def is_log(self) -> bool:
        """Whether the dimension is searched on a log scale."""
        return self.prior == "loguniform"

    def _round(self, x: float) -> float:
        if self.precision is None or x == 0 or not math.isfinite(x):
            return x
        return float(f"{x:.{min(self.precision, _MAX_DIGITS)}g}")

    def to_unit(self, value: Any) -> float:
        x = float(value)
        if self.prior == "uniform":
            return (x - self.low) / (self.high - self.low)
        if self.prior == "loguniform":
            return (math.log(x) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return float(special.ndtr((x - self.low) / self.high))

    def from_unit(self, u: float) -> float:
        u = self._unit(u)
        if self.prior == "uniform":
            x = self.low + u * (self.high - self.low)
        elif self.prior == "loguniform":
            x = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            u = min(max(u, 1e-12), 1 - 1e-12)
            x = self.low + self.high * float(special.ndtri(u))
        x = self._round(x)
        if self.prior != "normal":
            x = min(max(x, self.low), self.high)
        return x

    def sample(self, rng: np.random.Generator, size: int | None = None) -> Any:
        if self.prior != "normal":
            return super().sample(rng, size)
        draws = rng.normal(self.low, self.high, size)
        if size is None:
            return self._round(float(draws))
        return [self._round(float(x)) for x in draws]

    def contains(self, value: Any) -> bool:
        x = _as_float(value)
        if x is None or not math.isfinite(x):
            return False
        return self.prior == "normal" or self.low <= x <= self.high

    def cast(self, value: Any) -> float:
        return float(value)

    def __str__(self) -> str:
        opts = f", precision={self.precision}" if self.precision is not None else ""
        return f"{self.prior}({_fmt(self.low)}, {_fmt(self.high)}{opts}{self._options()})"


class Integer(Dimension):
    """An integer dimension on ``[low, high]``, both bounds **inclusive**.

    ``randint(low, high)`` and ``uniform(low, high, discrete=True)`` both give this, as does
    ``loguniform(low, high, discrete=True)`` (log scale).
    """

    dtype = "int64"

    def __init__(
        self,
        low: int,
        high: int,
        prior: str = "uniform",
        *,
        default_value: int | None = None,
        name: str = "",
        when: Any = None,
    ) -> None:
        super().__init__(default_value=default_value, name=name, when=when)
        self.prior = prior
        if prior not in ("uniform", "loguniform"):
            raise self._error(f"unknown integer prior {prior!r}")
        for bound in (low, high):
            if not _is_whole(bound):
                raise self._error(f"integer bounds must be whole numbers, got {_show(low)}, {_show(high)}")
            if not _fits_int64(bound):
                raise self._error(f"integer bounds must fit in 64 bits, got {_show(low)}, {_show(high)}")
        self.low, self.high = int(low), int(high)
        if self.low >= self.high:
            raise self._error(f"low must be < high, got low={low!r}, high={high!r}")
        if prior == "loguniform" and self.low <= 0:
            raise self._error(f"loguniform bounds must be positive, got low={low!r}")
        self._check_default()

    @property
    def is_log(self) -> bool:
        """Whether the dimension is searched on a log scale."""
        return self.prior == "loguniform"

    def _edges(self) -> tuple[float, float]:
        # Each integer owns an equal slice of [low - 0.5, high + 0.5] (in log space for log).
        lo, hi = self.low - 0.5, self.high + 0.5
        if self.is_log:
            return math.log(max(lo, self.low / 2)), math.log(hi)
        return lo, hi

    def to_unit(self, value: Any) -> float:
        lo, hi = self._edges()
        x = math.log(value) if self.is_log else float(value)
        return min(max((x - lo) / (hi - lo), 0.0), 1.0)

    def from_unit(self, u: float) -> int:
        u = self._unit(u)
        lo, hi = self._edges()
        x = lo + u * (hi - lo)
        if self.is_log:
            x = math.exp(x)
        return int(min(max(round(x), self.low), self.high))

    def sample(self, rng: np.random.Generator, size: int | None = None) -> Any:
        if self.is_log:
            return super().sample(rng, size)
        draws = rng.integers(self.low, self.high, size, endpoint=True)
        return int(draws) if size is None else [int(x) for x in draws]

    def contains(self, value: Any) -> bool:
        return _is_whole(value) and self.low <= int(value) <= self.high

    def cast(self, value: Any) -> int:
        return int(value)

    def __str__(self) -> str:
        if self.is_log:
            return f"loguniform({self.low}, {self.high}, discrete=True{self._options()})"
        return f"randint({self.low}, {self.high}{self._options()})"


class Categorical(Dimension):
    """A choice among literal values, optionally with probabilities.

    Parameters
    ----------
    choices : sequence or mapping
        The values; a mapping gives each value's prior probability.
    """

    def __init__(
        self,
        choices: Sequence[Any] | Mapping[Any, float],
        *,
        default_value: Any = None,
        name: str = "",
        when: Any = None,
    ) -> None:
        super().__init__(default_value=default_value, name=name, when=when)
        self.prior = "choices"
        if isinstance(choices, Mapping):
            values, weights = list(choices.keys()), list(choices.values())
            if not all(_is_finite_number(w) and w >= 0 for w in weights) or not (
                0 < math.fsum(float(w) for w in weights) < math.inf
            ):
                raise self._error(
                    f"choices probabilities must be finite non-negative numbers with a positive sum, "
                    f"got {_show(weights)}"
                )
            self._weighted = True
        elif isinstance(choices, (list, tuple)):
            values, weights = list(choices), [1.0] * len(choices)
            self._weighted = False
        else:
            raise self._error(f"choices takes a list or a dict, got {choices!r}")
        if len(values) < 1:
            raise self._error("choices needs at least one value")
        for v in values:
            if not isinstance(v, (str, int, float, bool, type(None))):
                raise self._error(f"choice {_show(v)} is not a literal (str, number, bool or None)")
            if isinstance(v, float) and not math.isfinite(v):
                raise self._error(f"choice {v!r} is not a finite number")
            if isinstance(v, int) and not _fits_int64(v):
                raise self._error(f"choice {_show(v)} does not fit in 64 bits")
        keys = [repr(v) for v in values]
        if len(set(keys)) != len(keys):
            raise self._error(f"choices are not unique: {values!r}")
        self.choices = values
        total = math.fsum(float(w) for w in weights)
        self.probabilities = np.asarray([float(w) for w in weights], dtype=float)
        # Weights that already are probabilities are kept as given: dividing them by a sum
        # one ulp off 1 would change them, and the canonical string would not round-trip.
        if abs(total - 1.0) > 1e-9:
            self.probabilities = self.probabilities / total
        self._cdf = np.cumsum(self.probabilities)
        self._cdf[-1] = 1.0
        self._index = dict(zip(keys, range(len(values))))
        kinds = {type(v) for v in values}
        if kinds == {str}:
            self.dtype = "str"
        elif kinds == {int}:
            self.dtype = "int64"
        elif kinds <= {int, float}:
            self.dtype = "float64"
        elif kinds == {bool}:
            self.dtype = "bool"
        else:
            # Mixed literals (e.g. [None, "balanced"]) are stored by their repr.
            self.dtype = "repr"
        self._check_default()

    def __len__(self) -> int:
        return len(self.choices)

    def index(self, value: Any) -> int:
        """Position of ``value`` among the choices."""
        key = repr(self.cast(value))
        if key not in self._index:
            raise self._error(f"{_show(value)} is not one of {_show(self.choices)}")
        return self._index[key]

    def to_unit(self, value: Any) -> float:
        i = self.index(value)
        lo = self._cdf[i - 1] if i else 0.0
        return float((lo + self._cdf[i]) / 2)

    def from_unit(self, u: float) -> Any:
        u = self._unit(u)
        i = int(np.searchsorted(self._cdf, u, side="right"))
        return self.choices[min(i, len(self.choices) - 1)]

    def contains(self, value: Any) -> bool:
        try:
            return repr(self.cast(value)) in self._index
        except Exception:  # a value whose repr or comparison fails is no choice
            return False

    def cast(self, value: Any) -> Any:
        # numpy scalars from a dataset compare equal to Python literals but repr differently.
        if isinstance(value, np.generic):
            value = value.item()
        if self.dtype == "float64" and _is_number(value):
            for v in self.choices:
                if v == value:
                    return v
        return value

    def __str__(self) -> str:
        if self._weighted:
            body = "{" + ", ".join(
                f"{_fmt(v)}: {_fmt(float(p))}" for v, p in zip(self.choices, self.probabilities)
            ) + "}"
        else:
            body = "[" + ", ".join(_fmt(v) for v in self.choices) + "]"
        return f"choices({body}{self._options()})"


class Fidelity(Dimension):
    """The budget of a trial (epochs, data fraction) for multi-fidelity algorithms.

    Optimizers that do not manage fidelity always use ``high``.  ``base`` is the reduction
    factor between successive fidelities.
    """

    def __init__(self, low: float, high: float, base: float = 2, *, name: str = "") -> None:
        super().__init__(name=name)
        self.prior = "fidelity"
        if not (_is_number(low) and _is_number(high) and _is_number(base)):
            raise self._error(f"fidelity takes numbers, got {_show(low)}, {_show(high)}, base={_show(base)}")
        if not all(_is_finite_number(x) for x in (low, high, base)):
            raise self._error(f"fidelity takes finite numbers, got {_show(low)}, {_show(high)}, base={_show(base)}")
        if not 0 < low < high:
            raise self._error(f"fidelity needs 0 < low < high, got low={low!r}, high={high!r}")
        if base <= 1:
            raise self._error(f"fidelity base must be > 1, got {base!r}")
        integral = all(float(x).is_integer() for x in (low, high))
        if integral and not _fits_int64(high):
            raise self._error(f"fidelity bounds must fit in 64 bits, got high={_show(high)}")
        self.dtype = "int64" if integral else "float64"
        self.low, self.high, self.base = low, high, base

    def sample(self, rng: np.random.Generator, size: int | None = None) -> Any:
        return self.high if size is None else [self.high] * size

    def to_unit(self, value: Any) -> float:
        return (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))

    def from_unit(self, u: float) -> Any:
        u = self._unit(u)
        x = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        return self.cast(min(max(x, self.low), self.high))

    def contains(self, value: Any) -> bool:
        return _is_number(value) and self.low <= value <= self.high  # NaN compares False

    def cast(self, value: Any) -> Any:
        return int(round(value)) if self.dtype == "int64" else float(value)

    def __str__(self) -> str:
        return f"fidelity({_fmt(self.low)}, {_fmt(self.high)}, base={_fmt(self.base)})"


# -- constructors (the same names as in prior strings) ---------------------------------------


def _check_discrete(discrete: Any) -> None:
    if not isinstance(discrete, (bool, np.bool_)):
        raise ValueError(f"dimension: discrete= takes True or False, got {_show(discrete)}")


def uniform(
    low: float,
    high: float,
    *,
    discrete: bool = False,
    precision: int | None = None,
    default_value: Any = None,
    when: Mapping[str, Any] | None = None,
) -> Real | Integer:
    """Uniform on ``[low, high]``; with ``discrete=True``, integers ``low..high`` inclusive.

    ``when`` (every prior takes it) makes the parameter conditional: ``{"kernel": "poly"}``
    or ``{"kernel": ["poly", "rbf"]}``; see :class:`Space`.
    """
    _check_discrete(discrete)
    if discrete:
        if precision is not None:
            raise ValueError("dimension: precision= does not apply to discrete=True")
        return Integer(low, high, default_value=default_value, when=when)
    return Real(low, high, "uniform", precision=precision, default_value=default_value, when=when)


def loguniform(
    low: float,
    high: float,
    *,
    discrete: bool = False,
    precision: int | None = None,
    default_value: Any = None,
    when: Mapping[str, Any] | None = None,
) -> Real | Integer:
    """Log-uniform on ``[low, high]`` (both positive); integers with ``discrete=True``."""
    _check_discrete(discrete)
    if discrete:
        if precision is not None:
            raise ValueError("dimension: precision= does not apply to discrete=True")
        return Integer(low, high, "loguniform", default_value=default_value, when=when)
    return Real(low, high, "loguniform", precision=precision, default_value=default_value, when=when)


def normal(
    mu: float, sigma: float, *, precision: int | None = None, default_value: Any = None,
    when: Mapping[str, Any] | None = None,
) -> Real:
    """Normal with mean ``mu`` and standard deviation ``sigma`` (unbounded)."""
    return Real(mu, sigma, "normal", precision=precision, default_value=default_value, when=when)


def randint(low: int, high: int, *, default_value: Any = None, when: Mapping[str, Any] | None = None) -> Integer:
    """Integers ``low..high``, **both inclusive** (unlike :func:`numpy.random.randint`)."""
    return Integer(low, high, default_value=default_value, when=when)


def choices(
    options: Sequence[Any] | Mapping[Any, float], *, default_value: Any = None, when: Mapping[str, Any] | None = None
) -> Categorical:
    """One of ``options``; a dict gives each option's probability."""
    return Categorical(options, default_value=default_value, when=when)


def fidelity(low: float, high: float, base: float = 2) -> Fidelity:
    """A fidelity (budget) dimension for multi-fidelity algorithms."""
    return Fidelity(low, high, base)


_PRIORS = {
    "uniform": uniform,
    "loguniform": loguniform,
    "normal": normal,
    "randint": randint,
    "choices": choices,
    "fidelity": fidelity,
}
_ARITY = {"uniform": 2, "loguniform": 2, "normal": 2, "randint": 2, "choices": 1, "fidelity": (2, 3)}
_OPTIONS = {
    "uniform": {"discrete", "precision", "default_value", "when"},
    "loguniform": {"discrete", "precision", "default_value", "when"},
    "normal": {"precision", "default_value", "when"},
    "randint": {"default_value", "when"},
    "choices": {"default_value", "when"},
    "fidelity": {"base"},
}


def parse_dimension(spec: str | Dimension, name: str = "") -> Dimension:
    """Parse a prior string such as ``"loguniform(1e-5, 1, precision=3)"``.

    Parameters
    ----------
    spec : str or Dimension
        The prior string, or a dimension object (returned as is, renamed).
    name : str
        The parameter name, used in error messages.

    Raises
    ------
    ValueError
        Naming the parameter and the problem: malformed strings, unknown priors or options,
        non-literal arguments, invalid bounds.
    """
    label = f"parameter {name!r}" if name else "dimension"
    if isinstance(spec, Dimension):
        spec.name = name
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"{label}: expected a prior string or a Dimension, got {_show(spec)}")
    shown = _show(spec)
    try:
        tree = ast.parse(spec.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ValueError(f"{label}: malformed prior {shown} ({exc.msg})") from None
    except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes, absurd nesting
        raise ValueError(f"{label}: malformed prior {shown} ({type(exc).__name__}: {exc})") from None
    if not (isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name)):
        raise ValueError(f"{label}: {shown} is not a prior call like 'uniform(0, 1)'")
    prior = tree.func.id
    if prior not in _PRIORS:
        raise ValueError(f"{label}: unknown prior {prior!r} in {shown}; known: {sorted(_PRIORS)}")
    if any(k.arg is None for k in tree.keywords):
        raise ValueError(f"{label}: ** arguments are not allowed in {shown}")
    try:
        args = [ast.literal_eval(a) for a in tree.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in tree.keywords}
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        # TypeError: an unhashable literal such as {[1]: 2}
        raise ValueError(f"{label}: arguments of {shown} must be literals") from None
    unknown = set(kwargs) - _OPTIONS[prior]
    if unknown:
        raise ValueError(
            f"{label}: unknown option(s) {sorted(unknown)} for {prior}; allowed: {sorted(_OPTIONS[prior])}"
        )
    arity = _ARITY[prior]
    allowed = arity if isinstance(arity, tuple) else (arity,)
    if len(args) not in allowed:
        raise ValueError(f"{label}: {prior} takes {' or '.join(map(str, allowed))} arguments, got {len(args)} in {shown}")
    try:
        dim = _PRIORS[prior](*args, **kwargs)
    except ValueError as exc:
        raise ValueError(str(exc).replace("dimension:", f"{label}:", 1)) from None
    except (TypeError, ArithmeticError) as exc:  # a safety net: always a ValueError naming the parameter
        raise ValueError(f"{label}: invalid arguments in {shown} ({type(exc).__name__}: {exc})") from None
    dim.name = name
    return dim


def _check_conditions(dims: Mapping[str, Dimension]) -> list[str]:
    """Check every ``when=`` of a space; return its names with every parent before its children.

    Raises
    ------
    ValueError
        Naming the parameter: an unknown parent, a parent that is not categorical, a value the
        parent cannot take, or a cycle of conditions.
    """
    for name, dim in dims.items():
        if dim.when is None:
            continue
        if isinstance(dim, Fidelity):
            raise ValueError(f"parameter {name!r}: a fidelity dimension cannot be conditional")
        for parent, values in dim.when.items():
            if parent not in dims:
                raise ValueError(f"parameter {name!r}: when= names {parent!r}, which is not a parameter of the space")
            if parent == name:
                raise ValueError(f"parameter {name!r}: when= names the parameter itself (a cycle)")
            prior = dims[parent]
            if not isinstance(prior, Categorical):
                raise ValueError(f"parameter {name!r}: when= parent {parent!r} must be categorical (choices), "
                                 f"it is {prior}")
            for value in values:
                if not prior.contains(value):
                    raise ValueError(f"parameter {name!r}: when={{{parent!r}: {_show(value)}}} can never hold: "
                                     f"{parent!r} is {prior}")
    order: list[str] = []
    state: dict[str, int] = {}  # 1: being visited, 2: done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join([*path[path.index(name):], name])
            raise ValueError(f"parameter {name!r}: its when= conditions form a cycle ({cycle})")
        state[name] = 1
        for parent in dims[name].when or {}:
            visit(parent, [*path, name])
        state[name] = 2
        order.append(name)

    for name in dims:
        visit(name, [])
    return order


class Space(Mapping[str, Dimension]):
    """An ordered mapping of parameter names to dimensions.

    Parameters
    ----------
    spec : mapping of str to (str or Dimension)
        For example ``{"x": "uniform(-5, 5)", "kernel": "choices(['rbf', 'linear'])"}``.

    Notes
    -----
    **Conditional parameters.**  Every prior but ``fidelity`` takes ``when=``, a dict of
    parent names to a value or a list of values: ``"randint(2, 5, when={'kernel': 'poly'})"``
    exists only while ``kernel`` is ``'poly'`` (all the conditions of a ``when`` must hold,
    and its parents must themselves be active: conditions nest).  A parent must be a
    categorical parameter of the space that can take every value named, and conditions must
    not form a cycle; otherwise ``ValueError`` naming the parameter.  :meth:`sample` and
    :meth:`validate` leave inactive parameters out of a configuration (the objective is not
    given them), and the history stores NaN (numbers) or an empty string for them.
    """

    def __init__(self, spec: Mapping[str, str | Dimension]) -> None:
        if isinstance(spec, Space):
            spec = {name: str(dim) for name, dim in spec.items()}
        if not isinstance(spec, Mapping) or not spec:
            raise ValueError(f"space must be a non-empty dict of name -> prior, got {spec!r}")
        dims: dict[str, Dimension] = {}
        for name, item in spec.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"parameter {name!r}: names must be Python identifiers")
            dims[name] = parse_dimension(item, name)
        self._dims = dims
        #: names, every parent before its children (the order of the spec otherwise)
        self._order = _check_conditions(dims)
        self.conditional = any(d.when is not None for d in dims.values())

    @property
    def order(self) -> tuple[str, ...]:
        """Parameter names, every parent before the parameters conditional on it."""
        return tuple(self._order)

    def __getitem__(self, name: str) -> Dimension:
        return self._dims[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dims)

    def __len__(self) -> int:
        return len(self._dims)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Space) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(tuple(self.to_dict().items()))

    def __repr__(self) -> str:
        return f"Space({self.to_dict()!r})"

    def to_dict(self) -> dict[str, str]:
        """Canonical prior strings by name (round-trips through :class:`Space`)."""
        return {name: str(dim) for name, dim in self._dims.items()}

    @property
    def fidelity(self) -> Fidelity | None:
        """The fidelity dimension, if the space has one."""
        for dim in self._dims.values():
            if isinstance(dim, Fidelity):
                return dim
        return None

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """Draw one configuration (without the parameters its values make inactive)."""
        params = {name: dim.sample(rng) for name, dim in self._dims.items()}
        return self._active_only(params) if self.conditional else params

    def is_active(self, name: str, params: Mapping[str, Any]) -> bool:
        """Whether parameter ``name`` exists in configuration ``params`` (see ``when=``)."""
        when = self._dims[name].when
        if when is None:
            return True
        for parent, values in when.items():
            if parent not in params or not self.is_active(parent, params):
                return False
            dim = self._dims[parent]
            try:
                index = dim.index(params[parent])
            except ValueError:
                return False
            if index not in {dim.index(v) for v in values}:
                return False
        return True

    def _active_only(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {n: v for n, v in params.items() if n in self._dims and self.is_active(n, params)}

    def defaults(self) -> dict[str, Any] | None:
        """The configuration of default values, when every searched dimension has one."""
        searched = {n: d for n, d in self._dims.items() if not isinstance(d, Fidelity)}
        if not all(d.default_value is not None for d in searched.values()):
            return None
        params = {n: d.cast(d.default_value) for n, d in searched.items()}
        fid = self.fidelity
        if fid is not None:
            params[fid.name] = fid.high
        return self._active_only(params) if self.conditional else params

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Check a configuration; return it with values cast to their types.

        In a conditional space, the values of parameters that the configuration makes
        inactive are left out of what is returned (given or not); active ones are required.
        """
        if not isinstance(params, Mapping):
            raise ValueError(f"a configuration is a dict of parameter -> value, got {_show(params)}")
        extra = [n for n in params if n not in self._dims]
        if not self.conditional:
            missing = [n for n in self._dims if n not in params]
            if missing or extra:
                raise ValueError(f"configuration {_show(dict(params))}: missing {missing}, unknown {extra}")
            return {n: d.validate(params[n]) for n, d in self._dims.items()}
        out: dict[str, Any] = {}
        missing = []
        for name in self._order:  # parents first: a child's activity reads validated values
            if not self.is_active(name, out):
                continue
            if name in params:
                out[name] = self._dims[name].validate(params[name])
            else:
                missing.append(name)
        if missing or extra:
            raise ValueError(f"configuration {_show(dict(params))}: missing {missing}, unknown {extra}")
        return {n: out[n] for n in self._dims if n in out}

    def to_unit(self, params: Mapping[str, Any]) -> np.ndarray:
        """Map a configuration to a point of the unit cube (one coordinate per dimension)."""
        return np.array([d.to_unit(params[n]) for n, d in self._dims.items()], dtype=float)

    def from_unit(self, point: Sequence[float]) -> dict[str, Any]:
        """Map a point of the unit cube to a valid configuration."""
        if len(point) != len(self._dims):
            raise ValueError(f"point has {len(point)} coordinates, the space {len(self._dims)}")
        return {n: d.from_unit(u) for (n, d), u in zip(self._dims.items(), point)}
