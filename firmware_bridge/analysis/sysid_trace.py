"""A rollout log prepared for simulation: the `Trace` (controller clock, seconds).

Analysis floor. A rollout log (`firmware_bridge.logs.rollout_log`) becomes a `Trace`: the
controller's STATE samples on the controller's own clock, and the commands with their
arrival times mapped onto that clock (`sysid_clock`). `ReplayError` names a part of the log
that the replay or the fit needs and cannot use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from firmware_bridge.analysis.sysid_clock import Timing, command_clock
from firmware_bridge.logs.rollout_log import controller_seconds

ENABLED = 1  # protocol Status.ENABLED


class ReplayError(ValueError):
    """A part of the log that the simulation replay needs is missing or unusable."""


@dataclass
class Trace:
    """A logged run prepared for simulation (controller clock, seconds)."""

    t: np.ndarray
    """(S,) STATE times."""
    sensors: np.ndarray
    """(S, n_sensors) STATE sensor values."""
    cmd_host: np.ndarray
    """(K,) host times the COMMANDs were sent."""
    cmd: np.ndarray
    """(K, nu) COMMAND values (after the host safety layer: what the controller got)."""
    safe: np.ndarray
    """(nu,) the safe command (before the first COMMAND and once the controller disarms)."""
    timing: Timing
    disarmed: list[tuple[float, float]] = field(default_factory=list)
    """Controller time intervals (off, on) in which it reported itself disarmed (fault,
    watchdog, disable; on = inf if it was not armed again): the safe command holds there,
    and after re-arming until the next COMMAND."""
    notes: list[str] = field(default_factory=list)
    resolution: np.ndarray | None = None
    """Sensor resolution of the run (None: the spec's)."""

    @property
    def duration(self) -> float:
        return float(self.t[-1] - self.t[0]) if self.t.size else 0.0

    def arrivals(self, latency_s: float = 0.0) -> np.ndarray:
        """(K,) controller times at which the commands take effect (non-decreasing)."""
        a = self.timing.to_ctrl(self.cmd_host) + latency_s
        return np.maximum.accumulate(a) if a.size else a


def trace_from_log(data, spec) -> Trace:
    """Build a Trace from a read log (`LogData`); raises ReplayError naming what is missing."""
    states = data.topic("/state")
    cmds = data.topic("/command")
    if not states:
        raise ReplayError("no STATE messages in the log")
    n = spec.n_sensors
    ok = [s for s in states if len(s.get("sensors", ())) == n]
    if len(ok) < len(states) and not ok:
        raise ReplayError(f"STATE messages do not carry the robot's {n} sensors")
    notes = []
    t, reset_at = controller_seconds([s["t_us"] for s in ok])
    if reset_at is not None:  # a new boot's clock: its STATEs belong to no command sent here
        cut = float(ok[reset_at].get("t_host", np.inf))
        notes.append(
            f"the controller reset after {reset_at} STATEs (its clock started again); "
            "what came after is not replayed"
        )
        ok, t = ok[:reset_at], t[:reset_at]
        cmds = [c for c in cmds if float(c.get("t_host", -np.inf)) < cut]
    sensors = np.array([s["sensors"] for s in ok], dtype=np.float64)
    status = np.array([s.get("status", ENABLED) for s in ok], dtype=np.int64)
    order = np.argsort(t, kind="stable")
    t, sensors, status = t[order], sensors[order], status[order]
    keep = np.concatenate([[True], np.diff(t) > 0])  # a STATE seen twice
    t, sensors, status = t[keep], sensors[keep], status[keep]
    if not np.all(np.isfinite(sensors)):
        bad = ~np.all(np.isfinite(sensors), axis=1)
        t, sensors, status = t[~bad], sensors[~bad], status[~bad]
    if t.size < 2:
        raise ReplayError("fewer than 2 usable STATE messages")

    nu = spec.n_actuators
    cmds = [c for c in cmds if len(c.get("values", ())) == nu]
    cmd = np.array([c["values"] for c in cmds], dtype=np.float64).reshape(-1, nu)
    meta = data.run
    timing, cmd_host = command_clock(meta, ok, cmds, data.topic("/timing"))
    resolution = None
    pert = meta.get("perturbation") if meta.get("simulated") else None
    if isinstance(pert, dict):  # a simulated log states its sensor model exactly
        if pert.get("sensor_bias") is not None:
            sensors = sensors - np.asarray(pert["sensor_bias"], dtype=np.float64)
            notes.append("the sensor bias the simulation sampled is taken out of the readings")
        resolution = spec.resolution * float(pert.get("resolution_scale") or 1.0)
    disarmed = _disarmed(t, (status & ENABLED) != 0)
    for off, on in disarmed:
        again = f", armed again at {on - t[0]:.3f} s" if np.isfinite(on) else ""
        notes.append(f"controller reported itself disarmed at t={off - t[0]:.3f} s{again}")
    return Trace(
        t, sensors, cmd_host, cmd, spec.safe_command.copy(), timing, disarmed, notes, resolution
    )


def _disarmed(t: np.ndarray, enabled: np.ndarray) -> list[tuple[float, float]]:
    """(off, on) intervals after the first armed STATE in which STATEs say disarmed."""
    if not enabled.any():
        return []
    out = []
    first = int(np.argmax(enabled))
    flips = np.flatnonzero(np.diff(enabled[first:].astype(np.int8))) + first + 1
    off = None
    for i in flips:
        if not enabled[i]:
            off = float(t[i])
        elif off is not None:
            out.append((off, float(t[i])))
            off = None
    if off is not None:
        out.append((off, np.inf))
    return out
