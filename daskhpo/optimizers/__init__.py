"""Search algorithms behind one protocol (:class:`Optimizer`), and their registry.

Adding an algorithm means one new module and one line in ``_BUILTIN`` (or a call to
:func:`register_optimizer` from user code).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from ..space import Space
from .base import CONTINUE, PRUNE, Optimizer, PendingTrials, Report, Suggestion, Trial, check_option

__all__ = [
    "Optimizer",
    "Suggestion",
    "Trial",
    "Report",
    "CONTINUE",
    "PRUNE",
    "PendingTrials",
    "check_option",
    "make_optimizer",
    "register_optimizer",
    "available",
]

# name -> "module:Class", imported on first use so that unused algorithms cost nothing.
_BUILTIN: dict[str, str] = {
    "random": "daskhpo.optimizers.random:RandomSearch",
    "grid": "daskhpo.optimizers.grid:GridSearch",
    "tpe": "daskhpo.optimizers.tpe:TPE",
    "gp": "daskhpo.optimizers.gp:GP",
    "evolution": "daskhpo.optimizers.evolution:Evolution",
    "asha": "daskhpo.optimizers.asha:ASHA",
    "hyperband": "daskhpo.optimizers.hyperband:Hyperband",
    "pbt": "daskhpo.optimizers.pbt:PBT",
    "race": "daskhpo.optimizers.race:Race",
    "parego": "daskhpo.optimizers.parego:ParEGO",
    "cmaes": "daskhpo.optimizers.cmaes:CMAES",
    "sobol": "daskhpo.optimizers.sobol:Sobol",
    "qmc": "daskhpo.optimizers.sobol:QMC",
    "motpe": "daskhpo.optimizers.motpe:MOTPE",
    "auto": "daskhpo.optimizers.auto:Auto",
}
_REGISTRY: dict[str, type[Optimizer] | str] = dict(_BUILTIN)


def register_optimizer(name: str, cls: type[Optimizer]) -> None:
    """Make ``cls`` available as ``algorithm=name``.

    Parameters
    ----------
    name : str
        The registry name.
    cls : type
        An :class:`Optimizer` subclass, built as ``cls(space, seed=seed, **config)``.

    Raises
    ------
    TypeError
        If ``cls`` is not an :class:`Optimizer` subclass.
    """
    if not (isinstance(cls, type) and issubclass(cls, Optimizer)):
        raise TypeError(f"algorithm {name!r}: {cls!r} is not an Optimizer subclass")
    _REGISTRY[name] = cls


def available() -> list[str]:
    """Names accepted by ``algorithm=``.

    Returns
    -------
    list of str
        Sorted registry names, built-in and registered.
    """
    return sorted(_REGISTRY)


def optimizer_class(name: str) -> type[Optimizer]:
    """The class registered under ``name`` (imported on first use).

    Raises
    ------
    ValueError
        For an unknown name.
    """
    try:
        entry = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; available: {available()}") from None
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = _REGISTRY[name] = getattr(importlib.import_module(module), attr)
    return entry


def algorithm_spec(algorithm: Any) -> Any:
    """An ``algorithm=`` value as JSON: the name, ``[name, {config}]``, or an object's name.

    What an algorithm that delegates to another (a ``sampler``) stores in its ``config``.
    """
    if isinstance(algorithm, Optimizer):
        return algorithm.name or type(algorithm).__name__
    if isinstance(algorithm, (tuple, list)):
        return [algorithm[0], dict(algorithm[1])]
    return algorithm


def make_optimizer(algorithm: Any, space: Space, seed: int | None) -> Optimizer:
    """Build an optimizer from ``"name"``, ``("name", {config})`` or an instance.

    Raises
    ------
    ValueError
        For an unknown name or invalid configuration.
    """
    if isinstance(algorithm, Optimizer):
        return algorithm
    if isinstance(algorithm, str):
        name, config = algorithm, {}
    elif (
        isinstance(algorithm, (tuple, list))
        and len(algorithm) == 2
        and isinstance(algorithm[0], str)
        and isinstance(algorithm[1], Mapping)
    ):
        name, config = algorithm[0], dict(algorithm[1])
    else:
        raise ValueError(
            f"algorithm must be a name, (name, {{config}}) or an Optimizer, got {algorithm!r}"
        )
    cls = optimizer_class(name)
    try:
        return cls(space, seed=seed, **config)
    except TypeError as exc:
        raise ValueError(f"algorithm {name!r}: invalid configuration {config!r} ({exc})") from None
