"""Which GPU(s) each running trial uses: a small allocator per worker.

Dask counts resources, it does not name devices: a worker declaring ``GPU=2`` runs two
trials asking ``{"GPU": 1}`` at once, or four asking ``{"GPU": 0.5}``, and tells neither
which device is its.  :func:`trial_devices` (entered by :func:`daskhpo.engine.run_trial`
around each objective call whose request has a ``"GPU"`` share) gives each trial specific
devices among the worker's own, and the trial context holds them
(:func:`daskhpo.current_trial_devices`):

* the worker's devices are its ``CUDA_VISIBLE_DEVICES`` (a Slurm job's GPUs), read once;
  without it, ``0 .. N-1`` for a Dask worker declaring ``GPU=N``; without either, none
  (nothing is assigned, the trial's record keeps the environment's value as before);
* a trial asking ``k >= 1`` GPUs gets the ``k`` least loaded devices (free ones first);
* a trial asking a share ``0 < k < 1`` goes to the fullest device it still fits on (best
  fit), so that shares pack onto few devices and whole ones stay free for whole-GPU
  trials;
* when no device has room (shares fragmented by the order trials ended in: two half
  trials on two devices, then a whole-GPU trial), the least loaded device(s) are shared
  and a warning says so: a Dask task never waits here for a device.

``os.environ`` is left alone: it is shared by the worker's threads, and CUDA reads
``CUDA_VISIBLE_DEVICES`` once per process, at its first initialization.  Programs a trial
starts get the variable set to their devices (:mod:`daskhpo.integrations.hunt` does it;
:meth:`TrialDevices.environ` makes such an environment); in-process objectives select
their device by :attr:`TrialDevices.ordinals` (``torch.device(f"cuda:{i}")``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["TrialDevices", "DeviceAllocator", "trial_devices", "visible_devices"]

logger = logging.getLogger(__name__)

#: the resource name of GPUs in a request (as :mod:`daskhpo.engine.resources` names it)
GPU = "GPU"
#: slack in adding shares (0.1 + 0.2 + 0.7 fits in one device)
_EPS = 1e-9


@dataclass(frozen=True)
class TrialDevices:
    """The GPU(s) assigned to a running trial.

    Attributes
    ----------
    ids : tuple of str
        The devices as the worker's ``CUDA_VISIBLE_DEVICES`` names them (what the trial's
        record stores in ``gpu``, comma-separated).
    ordinals : tuple of int
        Their positions among the worker process's visible devices: the CUDA device
        numbers an in-process objective uses (``cuda:<ordinal>``).
    share : float
        The part of each device the trial asked for (1.0 for whole devices).
    """

    ids: tuple[str, ...]
    ordinals: tuple[int, ...]
    share: float = 1.0

    @property
    def cuda_visible_devices(self) -> str:
        """The value of ``CUDA_VISIBLE_DEVICES`` for a program that runs this trial."""
        return ",".join(self.ids)

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """A copy of ``base`` (default ``os.environ``) with ``CUDA_VISIBLE_DEVICES`` set to these devices."""
        env = dict(os.environ if base is None else base)
        env["CUDA_VISIBLE_DEVICES"] = self.cuda_visible_devices
        return env


class DeviceAllocator:
    """Assigns the devices of one worker to its running trials; thread-safe.

    Parameters
    ----------
    devices : sequence of str
        The worker's devices, in ``CUDA_VISIBLE_DEVICES`` order.
    """

    def __init__(self, devices: Sequence[str]) -> None:
        self.devices = tuple(devices)
        #: share of each device in use
        self.load = [0.0] * len(self.devices)
        self._lock = threading.Lock()

    def acquire(self, gpus: float) -> TrialDevices | None:
        """Devices for a trial asking ``gpus`` (a share below 1, or a whole number); ``None`` for 0
        or a worker without devices."""
        n = len(self.devices)
        if gpus <= 0 or n == 0:
            return None
        with self._lock:
            if gpus < 1:
                share = float(gpus)
                room = [i for i in range(n) if self.load[i] + share <= 1 + _EPS]
                if room:  # best fit: the fullest device with room
                    chosen = [max(room, key=lambda i: (self.load[i], -i))]
                else:
                    chosen = [min(range(n), key=lambda i: (self.load[i], i))]
            else:
                share = 1.0
                chosen = sorted(sorted(range(n), key=lambda i: (self.load[i], i))[: int(gpus)])
                if int(gpus) > n:
                    logger.warning("a trial asks for %d GPUs; this worker has %d: it gets them all", int(gpus), n)
            if any(self.load[i] + share > 1 + _EPS for i in chosen):
                logger.warning("no free room for a trial asking %s GPU(s) (loads %s): it shares device(s) %s",
                               gpus, self.load, [self.devices[i] for i in chosen])
            for i in chosen:
                self.load[i] += share
        return TrialDevices(tuple(self.devices[i] for i in chosen), tuple(chosen), share)

    def release(self, devices: TrialDevices) -> None:
        """Give back what :meth:`acquire` returned."""
        with self._lock:
            for i in devices.ordinals:
                self.load[i] = max(0.0, self.load[i] - devices.share)


def visible_devices(declared: float | None = None, environ: Mapping[str, str] | None = None) -> list[str]:
    """A worker's devices: its ``CUDA_VISIBLE_DEVICES``, else ``0 .. declared-1``."""
    value = (os.environ if environ is None else environ).get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        return [d.strip() for d in value.split(",") if d.strip()]
    return [str(i) for i in range(int(declared or 0))]


#: an allocator per worker of this process (several in-process workers: one each), by address;
#: outside a Dask worker (in-process executors), one per value of CUDA_VISIBLE_DEVICES
_ALLOCATORS: dict[Any, DeviceAllocator] = {}
_ALLOCATORS_LOCK = threading.Lock()


def _allocator(worker: Any) -> DeviceAllocator:
    key = ("process", os.environ.get("CUDA_VISIBLE_DEVICES")) if worker is None else worker.address
    with _ALLOCATORS_LOCK:
        allocator = _ALLOCATORS.get(key)
        if allocator is None:
            declared = None if worker is None else worker.state.total_resources.get(GPU)
            allocator = _ALLOCATORS[key] = DeviceAllocator(visible_devices(declared))
            if declared is not None and len(allocator.devices) > declared:
                logger.info("worker %s declares GPU=%s and sees devices %s: trials are assigned among all of "
                            "them (other worker processes on the node may use them too)", key, declared,
                            allocator.devices)
        return allocator


@contextlib.contextmanager
def trial_devices(request: Mapping[str, float] | None, worker: Any = None) -> Iterator[TrialDevices | None]:
    """The devices of a trial asking ``request`` on ``worker`` (a Dask worker or ``None``), for the block.

    ``None`` when the request asks for no GPU or the worker has no devices.
    """
    gpus = (request or {}).get(GPU, 0)
    allocator = _allocator(worker) if gpus > 0 else None
    devices = allocator.acquire(gpus) if allocator is not None else None
    try:
        yield devices
    finally:
        if devices is not None:
            allocator.release(devices)
