"""Trials that prove they ran at the same time: each waits until another runs beside it.

For objectives running in one process (in-process Dask workers, or the threads of one
worker process): no sleep, no clock; a trial returns once it has met a peer, or after
``timeout`` seconds without one (then ``meet`` says False and the test fails, never hangs).
"""

from __future__ import annotations

import threading


class Rendezvous:
    """Who ran with whom, on what; ``peak``: most trials at once."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.cond = threading.Condition()
        self.running: dict[int, str] = {}
        self.met: dict[int, set[int]] = {}
        self.peak = 0
        #: at each arrival, the number of trials running on each device (by its id)
        self.device_loads: list[dict[str, int]] = []

    def meet(self, trial: int, gpu: str) -> bool:
        """Wait until another trial runs beside ``trial`` (on device(s) ``gpu``); whether one did."""
        with self.cond:
            self.running[trial] = gpu
            self.peak = max(self.peak, len(self.running))
            loads: dict[str, int] = {}
            for g in self.running.values():
                loads[g] = loads.get(g, 0) + 1
            self.device_loads.append(loads)
            self.met[trial] = set()
            for other in self.running:
                if other != trial:
                    self.met[trial].add(other)
                    self.met[other].add(trial)
            self.cond.notify_all()
            met = self.cond.wait_for(lambda: self.met[trial], timeout=self.timeout)
            del self.running[trial]
            return bool(met)
