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


@dataclass(frozen=True)
class StartState:
    """A simulated episode's initial physics state, as its run metadata logs it
    (`initial_state`): the state the first STATE was read from, at that STATE's time (the
    first reading is taken at the initial state, not after a physics step)."""

    qpos: np.ndarray
    qvel: np.ndarray


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
    """(nu,) the control before the first COMMAND: the spec's `soft_start_origin` of the
    first reading (a position servo holds its measured pose; the training engine and a
    simulated episode hold the actuators there, and the deploy's soft start ramps from it)."""
    timing: Timing
    disarmed: list[tuple[float, float]] = field(default_factory=list)
    """Controller time intervals (off, on) in which it reported itself disarmed (fault,
    watchdog, disable; on = inf if it was not armed again): the safe command holds there,
    and after re-arming until the next COMMAND."""
    notes: list[str] = field(default_factory=list)
    resolution: np.ndarray | None = None
    """Sensor resolution of the run (None: the spec's)."""
    held: list[np.ndarray] = field(default_factory=list)
    """(nu,) per `disarmed` interval, the safe command held there: the spec's
    `safe_command_for` the reading at `off` (a 'hold' actuator holds the pose it stopped
    in; torque off, which the replay cannot model, holds the spec's safe value)."""
    start: StartState | None = None
    """The exact physics state the first STATE was read from (a simulated episode logs it);
    None: the replay starts from the readings."""

    @property
    def duration(self) -> float:
        return float(self.t[-1] - self.t[0]) if self.t.size else 0.0

    def arrivals(self, latency_s: float = 0.0) -> np.ndarray:
        """(K,) controller times at which the commands take effect (non-decreasing)."""
        a = self.timing.to_ctrl(self.cmd_host) + latency_s
        return np.maximum.accumulate(a) if a.size else a


def trace_from_log(data, spec) -> Trace:
    """Build a Trace from a read log (`LogData`); raises ReplayError naming what is missing."""
    notes: list[str] = []
    ok, cmds = _states_and_commands(data, spec, notes)
    t, sensors, status = _ordered(ok)
    nu = spec.n_actuators
    cmds = [c for c in cmds if len(c.get("values", ())) == nu]
    cmd = np.array([c["values"] for c in cmds], dtype=np.float64).reshape(-1, nu)
    meta = data.run
    timing, cmd_host = command_clock(meta, ok, cmds, data.topic("/timing"))
    disarmed = _disarmed(t, (status & ENABLED) != 0)
    for off, on in disarmed:
        again = f", armed again at {on - t[0]:.3f} s" if np.isfinite(on) else ""
        notes.append(f"controller reported itself disarmed at t={off - t[0]:.3f} s{again}")
    # what the actuators hold comes from the readings as the controller saw them (bias in)
    start_ctrl, held = spec.soft_start_origin(sensors[0]), _held(spec, t, sensors, disarmed)
    resolution = None
    pert = meta.get("perturbation") if meta.get("simulated") else None
    if isinstance(pert, dict):  # a simulated log states its sensor model exactly
        if pert.get("sensor_bias") is not None:
            sensors = sensors - np.asarray(pert["sensor_bias"], dtype=np.float64)
            notes.append("the sensor bias the simulation sampled is taken out of the readings")
        resolution = spec.resolution * float(pert.get("resolution_scale") or 1.0)
    return Trace(
        t, sensors, cmd_host, cmd, start_ctrl, timing, disarmed, notes, resolution, held,
        _start_state(meta, notes),
    )  # fmt: skip


def _states_and_commands(data, spec, notes: list[str]) -> tuple[list[dict], list[dict]]:
    """The STATEs that carry the robot's sensors, up to a controller reset (a new boot's
    clock: its STATEs belong to no command sent here), and the COMMANDs sent before it."""
    states = data.topic("/state")
    cmds = data.topic("/command")
    if not states:
        raise ReplayError("no STATE messages in the log")
    n = spec.n_sensors
    ok = [s for s in states if len(s.get("sensors", ())) == n]
    if len(ok) < len(states) and not ok:
        raise ReplayError(f"STATE messages do not carry the robot's {n} sensors")
    _, reset_at = controller_seconds([s["t_us"] for s in ok])
    if reset_at is not None:
        cut = float(ok[reset_at].get("t_host", np.inf))
        notes.append(
            f"the controller reset after {reset_at} STATEs (its clock started again); "
            "what came after is not replayed"
        )
        ok = ok[:reset_at]
        cmds = [c for c in cmds if float(c.get("t_host", -np.inf)) < cut]
    return ok, cmds


def _ordered(ok: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t, sensors, status) of the STATEs on the controller clock, in time order, each
    once, the non-finite ones left out."""
    t, _ = controller_seconds([s["t_us"] for s in ok])
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
    return t, sensors, status


def _held(spec, t: np.ndarray, sensors: np.ndarray, disarmed) -> list[np.ndarray]:
    """The safe command each disarmed interval holds: `safe_command_for` the reading at its
    start, torque off (NaN) as the spec's safe value."""
    out = []
    for off, _ in disarmed:
        c = spec.safe_command_for(sensors[int(np.searchsorted(t, off))])
        out.append(np.where(np.isnan(c), spec.safe_command, c))
    return out


def _start_state(meta: dict, notes: list[str]) -> StartState | None:
    """A simulated log's exact initial state (`initial_state`: qpos, qvel), or None."""
    st = meta.get("initial_state") if meta.get("simulated") else None
    if not isinstance(st, dict):
        return None
    try:
        qpos = np.asarray(st["qpos"], dtype=np.float64).ravel()
        qvel = np.asarray(st["qvel"], dtype=np.float64).ravel()
    except (KeyError, TypeError, ValueError):
        notes.append("the logged initial state is unreadable; the replay starts from the readings")
        return None
    if not (np.all(np.isfinite(qpos)) and np.all(np.isfinite(qvel))):
        notes.append("the logged initial state is not finite; the replay starts from the readings")
        return None
    return StartState(qpos, qvel)


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
