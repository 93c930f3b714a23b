"""What each trial asks of its worker: Dask resources, fixed or per configuration.

``workon(..., resources=...)`` takes a dict (every trial asks the same, e.g. ``{"GPU": 1}``)
or a callable ``resources(params) -> dict`` evaluated for each trial (``lambda p: {"GPU": 2
if p["layers"] > 8 else 1}``).  A request maps resource names (strings) to non-negative
finite numbers; fractions are Dask's own (``{"GPU": 0.25}``: four such trials fit a worker
declaring ``GPU=1``).  A ``"GPU"`` request above 1 must be whole: a trial uses a share of
one device or whole devices (:mod:`daskhpo.devices` assigns them on the worker).

Pure: no Dask, no I/O.  The executor asks :class:`TrialResources` for each trial's request
and judges it against the workers' declared resources with :func:`fits` and
:func:`slots_on`.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any, Union

from .errors import NoWorkersError

__all__ = ["GPU", "Request", "ResourcesSpec", "TrialResources", "check_request", "fits", "slots_on", "largest"]

#: the resource name of GPUs (what :class:`daskhpo.SlurmGPUCluster`'s workers declare)
GPU = "GPU"

logger = logging.getLogger(__name__)

Request = dict[str, float]
ResourcesSpec = Union[Mapping[str, float], Callable[[dict[str, Any]], Mapping[str, float]], None]


def check_request(value: Any, where: str = "resources") -> Request:
    """``value`` as a resource request, or ValueError naming ``where`` and the problem."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a dict of resource name -> amount, got {value!r}")
    request: Request = {}
    for name, amount in value.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: resource names must be non-empty strings, got {name!r} in {dict(value)!r}")
        if isinstance(amount, bool) or not isinstance(amount, numbers.Real):
            raise ValueError(f"{where}: {name!r} must be a number, got {amount!r}")
        amount = float(amount)
        if not math.isfinite(amount) or amount < 0:
            raise ValueError(f"{where}: {name!r} must be a finite number >= 0, got {amount!r}")
        if name == GPU and amount > 1 and not amount.is_integer():
            raise ValueError(f"{where}: {GPU!r} is a share of one device (<= 1) or whole devices, got {amount!r}")
        request[name] = int(amount) if amount.is_integer() else amount
    return request


class TrialResources:
    """The resources of each trial: one fixed request, or one per configuration.

    Parameters
    ----------
    spec : dict, callable or None
        A request for every trial, or ``spec(params) -> dict`` called with a copy of each
        trial's parameters (when it is planned and when each attempt is submitted: keep it
        cheap and deterministic).  ``None`` or ``{}``: no resources.

    Raises
    ------
    ValueError
        A fixed request that is not a dict of names to non-negative finite numbers.
    """

    def __init__(self, spec: ResourcesSpec) -> None:
        self.fn: Callable[[dict[str, Any]], Any] | None = None
        self.fixed: Request | None = None
        #: address -> declared resources of the workers last asked for (see :meth:`checked`)
        self.declared: dict[str, dict] = {}
        if spec is None or isinstance(spec, Mapping):
            self.fixed = check_request(spec) or None if spec else None
        elif callable(spec):
            self.fn = spec
        else:
            raise ValueError(f"resources must be a dict or a callable(params) -> dict, got {spec!r}")

    @property
    def per_trial(self) -> bool:
        """Whether requests depend on the configuration."""
        return self.fn is not None

    def of(self, params: Mapping[str, Any], trial: int | None = None) -> Request | None:
        """The request of the trial with ``params`` (``None``: no resources).

        Raises
        ------
        ValueError
            The callable raised, or returned something that is not a valid request; the
            message names ``resources``, the trial and its parameters.
        """
        if self.fn is None:
            return self.fixed
        which = f"resources(params) for {'a trial' if trial is None else f'trial {trial}'} with params {dict(params)!r}"
        try:
            value = self.fn(dict(params))
        except Exception as exc:
            raise ValueError(f"{which} raised {type(exc).__name__}: {exc}") from exc
        return check_request(value, which) or None


    def checked(self, params: Mapping[str, Any], trial: int | None,
                workers: Callable[[], Mapping[str, Mapping[str, float]]]) -> Request | None:
        """:meth:`of`, once a per-configuration request is judged against the workers.

        ``workers()`` gives each connected worker's declared resources by address; it is
        asked again only when no worker seen last time fits (workers may have joined).  A
        fixed request is not judged here (the executor does it once, sizing its slots).

        Raises
        ------
        ValueError
            As :meth:`of`.
        NoWorkersError
            No connected worker can ever hold the request (names it and the largest
            worker).  With none connected (an adaptive cluster at 0 jobs) it is not judged.
        """
        request = self.of(params, trial)
        if not request or self.fn is None or any(fits(request, d) for d in self.declared.values()):
            return request
        try:
            self.declared = {a: dict(d) for a, d in workers().items()}
        except Exception as exc:  # the scheduler unreachable: the executor's watchdog judges that
            logger.debug("could not ask for the workers' resources: %s", exc)
            return request
        if self.declared and not any(fits(request, d) for d in self.declared.values()):
            address, declared = largest(request, self.declared)
            which = "a trial" if trial is None else f"trial {trial}"
            raise NoWorkersError(
                f"resources: {which} with params {dict(params)!r} asks for {request}, which no connected worker "
                f"can ever hold; the largest, {address}, has {declared or 'no resources'}"
            )
        return request


def fits(request: Mapping[str, float], declared: Mapping[str, float]) -> bool:
    """Whether a worker declaring ``declared`` can ever run a trial asking ``request``.

    As Dask's scheduler judges it: the worker declares each resource asked for (a request
    of 0 too), at least as much as asked.
    """
    return all(name in declared and declared[name] >= amount for name, amount in request.items())


def slots_on(request: Mapping[str, float] | None, declared: Mapping[str, float], nthreads: int) -> int:
    """Trials asking ``request`` that a worker (``declared``, ``nthreads``) runs at once."""
    if not request:
        return nthreads
    if not fits(request, declared):
        return 0
    # ``//`` as Dask subtracts: ten requests of 0.1 do not fit in 1.0 (the tenth finds 0.0999...)
    counts = [int(declared[name] // amount) for name, amount in request.items() if amount > 0]
    return min([nthreads, *counts])


def largest(request: Mapping[str, float], workers: Mapping[str, Mapping[str, float]]) -> tuple[str, dict]:
    """The worker (address, declared resources) with the most of what ``request`` asks for."""
    names = sorted(request)
    address = max(workers, key=lambda a: tuple(workers[a].get(n, -1.0) for n in names))
    return address, dict(workers[address])
