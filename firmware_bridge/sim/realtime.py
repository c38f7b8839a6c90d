"""`RealTimeLoop`: physics steps of one timestep each on the real clock, with the time
between them given to the stand-in's I/O. The framed controller (`sim.robot`) and the
servo bus (`sim.bus_robot`) are its two subclasses; both keep physics on the wall clock the
same way, so a host sees the same timing from either.

Sim floor: standard library only.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("sim_robot")

MAX_LAG_NS = 50_000_000
"""How far physics may fall behind real time (a stalled process) before it skips ahead
instead of catching up in a burst: a host never sees the robot move faster than physics."""


class RealTimeLoop:
    """Runs `step(now_ns)` every `dt_s` of the real clock and `wait(timeout_s)` in between,
    until `stop` is set (from a signal handler) or `duration_s` has passed. `k` counts the
    steps of the schedule (a skip ahead included); `t0_ns` is the run's start on
    `time.monotonic_ns`."""

    def __init__(self, dt_s: float, duration_s: float | None) -> None:
        self.dt_ns = int(round(dt_s * 1e9))
        self.end_ns = int(duration_s * 1e9) if duration_s else None
        self.stop = False
        self.k = 0
        self.t0_ns = 0
        self._behind_warned = False

    def step(self, now_ns: int) -> None:
        """One physics step; now_ns is the time since the start."""
        raise NotImplementedError

    def wait(self, timeout_s: float) -> None:
        """Serve I/O for at most timeout_s (return early when something arrived)."""
        raise NotImplementedError

    def run(self) -> None:
        self.t0_ns = time.monotonic_ns()
        while not self.stop:
            now = time.monotonic_ns() - self.t0_ns
            if self.end_ns is not None and now >= self.end_ns:
                break
            wait = ((self.k + 1) * self.dt_ns - now) / 1e9
            if wait > 0:
                self.wait(wait)
                continue
            self.step(now)
            self.k += 1
            lag = now - self.k * self.dt_ns
            if lag > MAX_LAG_NS:
                if not self._behind_warned:
                    log.warning("physics fell %.0f ms behind real time; skipping ahead", lag / 1e6)
                    self._behind_warned = True
                self.k = now // self.dt_ns
