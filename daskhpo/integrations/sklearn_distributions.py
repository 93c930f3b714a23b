"""``param_distributions`` as scikit-learn users write them, turned into a daskhpo space.

:class:`daskhpo.integrations.sklearn.SearchCV` takes what ``RandomizedSearchCV`` takes, and daskhpo's own
priors:

- a daskhpo prior string (``"loguniform(1e-3, 1e3)"``) or dimension (``daskhpo.choices(...)``);
- a list, tuple or 1-d array of values: ``choices(values)``; when some value is not a
  literal (an estimator, a tuple such as ``hidden_layer_sizes=(50,)``, ``nan``), the
  algorithm chooses among their indices and the estimator gets the value;
- a frozen ``scipy.stats`` distribution of a kind daskhpo has as a prior: the same prior
  (``loguniform(a, b)`` gives ``loguniform(a, b)``; ``uniform(loc, scale)`` gives
  ``uniform(loc, loc + scale)``; ``randint(low, high)`` gives ``randint(low, high - 1)``,
  scipy's ``high`` being exclusive and daskhpo's inclusive; ``norm(loc, scale)`` gives
  ``normal(loc, scale)``), which the algorithm models as it models its own priors;
- any other frozen distribution with a ``ppf`` (``scipy.stats.expon()``, ``poisson(3)``...):
  the algorithm searches its quantile ``q`` in ``uniform(0, 1)`` and the estimator gets
  ``ppf(q)`` (an integer for a discrete distribution), so model-based algorithms still learn
  where the good values lie; the history stores ``q``, ``cv_results_`` the value;
- any other object with ``rvs`` only: the algorithm searches a seed, and the estimator gets
  ``rvs(random_state=seed)`` (a random draw, which no algorithm can learn from).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..space import Dimension, normal, parse_dimension
from ..space import choices as choices_prior
from ..space import loguniform as loguniform_prior
from ..space import randint as randint_prior
from ..space import uniform as uniform_prior

__all__ = ["to_space", "Transform"]

#: quantiles searched for a distribution mapped through its ppf stay inside (0, 1), where
#: the ppf of an unbounded distribution is finite
_EDGE = 1e-9


class Transform:
    """Maps the value the algorithm searched to the value the estimator gets."""

    def __init__(self, dist: Any, kind: str) -> None:
        self.dist, self.kind = dist, kind

    def __call__(self, value: Any) -> Any:
        if self.kind == "index":  # self.dist is the list of values
            return self.dist[int(value)]
        if self.kind == "ppf":
            out = self.dist.ppf(min(max(float(value), _EDGE), 1 - _EDGE))
        else:  # "rvs": the searched value is a seed
            out = self.dist.rvs(random_state=int(float(value) * (2**31 - 2)))
        out = np.asarray(out).item() if np.ndim(out) == 0 else out
        if _is_discrete(self.dist) and isinstance(out, float) and math.isfinite(out):
            return int(out)
        return out

    def __repr__(self) -> str:
        what = repr(self.dist) if self.kind == "index" else _describe(self.dist)
        return f"Transform({what}, {self.kind!r})"


def _is_literal(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, (str, int, bool))


def _is_discrete(dist: Any) -> bool:
    from scipy.stats import rv_discrete

    return isinstance(getattr(dist, "dist", None), rv_discrete)


def _describe(dist: Any) -> str:
    name = getattr(getattr(dist, "dist", None), "name", type(dist).__name__)
    args = ", ".join(repr(a) for a in getattr(dist, "args", ()))
    kwds = ", ".join(f"{k}={v!r}" for k, v in getattr(dist, "kwds", {}).items())
    return f"{name}({', '.join(x for x in (args, kwds) if x)})"


def _shape_loc_scale(dist: Any) -> tuple[tuple, float, float] | None:
    try:  # scipy's own parser of a frozen distribution's arguments
        shapes, loc, scale = dist.dist._parse_args(*dist.args, **dist.kwds)
    except Exception:  # noqa: BLE001 - not a scipy distribution as we know it: use ppf/rvs
        return None
    return tuple(float(s) for s in shapes), float(loc), float(scale)


def _known_prior(dist: Any) -> Dimension | None:
    """The daskhpo prior equal to a frozen scipy distribution, when there is one."""
    name = getattr(getattr(dist, "dist", None), "name", None)
    parsed = _shape_loc_scale(dist)
    if name is None or parsed is None:
        return None
    shapes, loc, scale = parsed
    if name == "uniform":
        return uniform_prior(loc, loc + scale)
    if name in ("loguniform", "reciprocal") and loc == 0:
        low, high = shapes[0] * scale, shapes[1] * scale
        return loguniform_prior(low, high) if 0 < low < high else None
    if name == "randint":
        low, high = shapes[0] + loc, shapes[1] + loc - 1  # scipy's high is exclusive
        return randint_prior(int(low), int(high)) if low <= high else None
    if name == "norm":
        return normal(loc, scale)
    return None


def to_dimension(name: str, value: Any) -> tuple[Dimension | str, Transform | None]:
    """One entry of ``param_distributions`` as a daskhpo prior (and a transform, if any)."""
    if isinstance(value, (str, Dimension)):
        return value, None
    if isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim == 1):
        values = list(value)
        if not values:
            raise ValueError(f"param_distributions[{name!r}]: an empty list of values")
        values = [v.item() if isinstance(v, np.generic) else v for v in values]
        if all(_is_literal(v) for v in values):
            return choices_prior(values), None
        # objects (estimators, tuples, arrays...): the algorithm chooses their index
        return choices_prior(list(range(len(values)))), Transform(values, "index")
    if hasattr(value, "rvs"):
        known = _known_prior(value)
        if known is not None:
            return known, None
        if hasattr(value, "ppf"):
            return uniform_prior(0.0, 1.0), Transform(value, "ppf")
        return uniform_prior(0.0, 1.0), Transform(value, "rvs")
    raise ValueError(
        f"param_distributions[{name!r}]: {value!r} is neither a list of values, a distribution "
        "with rvs (scipy.stats), nor a daskhpo prior such as 'loguniform(1e-3, 1)'"
    )


def to_space(distributions: Any) -> tuple[dict[str, Any], dict[str, Transform]]:
    """The daskhpo space of ``param_distributions``, and the transforms of searched values.

    Raises
    ------
    ValueError
        For a list of dicts (scikit-learn's alternative grids: write one space with
        conditional priors, ``when=``, instead), an empty dict, or a value of no known kind.
    """
    if isinstance(distributions, (list, tuple)):
        raise ValueError(
            "param_distributions: a list of dicts (alternative grids) is not supported; write "
            "one dict and make parameters conditional with when= (see docs/spaces.md)"
        )
    if not isinstance(distributions, Mapping) or not distributions:
        raise ValueError(f"param_distributions must be a non-empty dict of parameter names to distributions, got {distributions!r}")
    space: dict[str, Any] = {}
    transforms: dict[str, Transform] = {}
    for name, value in distributions.items():
        space[name], transform = to_dimension(name, value)
        if isinstance(space[name], str):
            parse_dimension(space[name], name)  # a bad prior string fails here, naming the parameter
        if transform is not None:
            transforms[name] = transform
    return space, transforms
