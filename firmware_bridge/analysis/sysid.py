"""Open-loop simulation of a logged run on the robot's MJCF, and fitting model parameters to logs.

A rollout log (`firmware_bridge.logs.rollout_log`) becomes a `Trace`: the controller's STATE
samples on the controller's own clock, and the commands with their arrival times mapped onto
that clock. `replay` starts the model from the first logged STATE and drives it open-loop
by the logged commands; `windows` does the same from a logged STATE every `window_s`
(multiple shooting), which is what `fit` minimizes, so that the divergence of an unstable
system over a long open-loop run does not drown the model error.

Conventions (the same as `firmware_bridge.sim_robot` and the batched engine):
- a STATE stamped t holds `sensordata` after a physics step, i.e. the sensors MuJoCo
  computed at the start of that step; the simulated sample at t is taken the same way;
- a command takes effect at the first physics step after it reaches the controller (zero
  order hold). The simulation spreads a command that arrives inside a physics step over that
  step and the next in proportion (the hold averaged over the arrival phase), so the replay
  error is continuous in timing and latency, which the fit differentiates.

Clock mapping: the host logs when it sent each COMMAND on its own clock; the controller
stamps each STATE on its clock and reports the last COMMAND it applied. The host/controller
offset is bracketed from both sides: a STATE cannot be used before it was sent (upper bound)
and a COMMAND cannot be applied before it was sent (lower bound, from the first STATE that
acknowledges it). The midpoint is used, with a linear drift fitted over the run for
controllers with their own crystal. A bracket wider than two physics steps is narrowed by a
1-D search of the replay error over it.
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass, field
from typing import Any

import mujoco
import numpy as np

from firmware_bridge.logs.rollout_log import controller_seconds

log = logging.getLogger(__name__)

NO_COMMAND = 0xFFFFFFFF
ENABLED = 1  # protocol Status.ENABLED
_FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS


class ReplayError(ValueError):
    """A part of the log that the simulation replay needs is missing or unusable."""


# ----------------------------------------------------------------------------- the trace


@dataclass
class Timing:
    """How host times map onto the controller clock: ctrl = (host - offset) / (1 + drift)."""

    offset_s: float
    drift: float = 0.0
    window_s: float | None = None
    """Width of the offset bracket (the timing uncertainty); None where the log states it."""
    transit_s: float = 0.0
    """Known time from the host's send to the controller latching a COMMAND (sim logs)."""
    method: str = "bracket"

    def to_ctrl(self, host_s: np.ndarray) -> np.ndarray:
        return (np.asarray(host_s) - self.offset_s) / (1.0 + self.drift) + self.transit_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "offset_s": round(self.offset_s, 7),
            "drift_ppm": round(self.drift * 1e6, 3),
            "window_ms": None if self.window_s is None else round(self.window_s * 1e3, 3),
            "transit_ms": round(self.transit_s * 1e3, 3),
            "method": self.method,
        }


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
    timing = _log_timing(meta)
    if timing is None:
        timing = estimate_timing(ok, cmds, data.topic("/timing"))
    cmd_host = _send_times(cmds, data.topic("/timing"))
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


def _log_timing(meta: dict[str, Any]) -> Timing | None:
    """Timing stated by the log itself (simulated logs know their clocks exactly)."""
    tm = meta.get("timing")
    if not isinstance(tm, dict) or "clock_offset_s" not in tm:
        return None
    return Timing(
        offset_s=float(tm["clock_offset_s"]),
        transit_s=float(tm.get("command_transit_s", 0.0)),
        method="log",
    )


def _send_times(cmds: list[dict], timing: list[dict]) -> np.ndarray:
    """Host time each COMMAND left (tick start + compute time; the tick start if unknown)."""
    host = np.array([c["t_host"] for c in cmds], dtype=np.float64)
    if not timing:
        return host
    compute = {int(r["tick"]): float(r.get("compute_us", 0.0)) for r in timing if "tick" in r}
    extra = np.array([compute.get(int(c.get("tick", -1)), 0.0) for c in cmds]) / 1e6
    return host + np.where(np.isfinite(extra), extra, 0.0)


def estimate_timing(states: list[dict], cmds: list[dict], timing: list[dict]) -> Timing:
    """Bracket the host/controller clock offset (module docstring), with linear drift."""
    th = np.array([s["t_host"] for s in states], dtype=np.float64)
    tu = controller_seconds([s["t_us"] for s in states])[0]
    upper = th - tu  # offset <= this (a STATE is used after it was sent)
    t_up = tu
    low_t: list[float] = []
    lower: list[float] = []
    if cmds:
        seq_start = {}
        if timing:
            seq_start = {
                int(r["tick"]): float(r.get("compute_us", 0.0)) - float(r.get("send_us", 0.0))
                for r in timing
                if "tick" in r
            }
        # An acknowledgement counts only for a COMMAND sent at an earlier tick than the
        # STATE was read: a controller that kept its last_cmd_seq from an earlier session
        # (reconnect without reboot) reports seqs this session sends only later.
        sent_tick = {int(c["seq"]): int(c.get("tick", -1)) for c in cmds}
        acked = np.array(
            [
                s.get("last_cmd_seq", NO_COMMAND)
                if sent_tick.get(int(s.get("last_cmd_seq", NO_COMMAND)), 1 << 62)
                < int(s.get("tick", -1))
                else -1
                for s in states
            ],
            dtype=np.int64,
        )
        acked = np.maximum.accumulate(acked)
        for c in cmds:
            j = int(np.searchsorted(acked, int(c["seq"]), side="left"))
            if j >= len(acked):
                continue
            start = c["t_host"] + max(0.0, seq_start.get(int(c.get("tick", -1)), 0.0)) / 1e6
            lower.append(start - tu[j])  # offset >= this (applied after it was sent)
            low_t.append(tu[j])
    if not lower:
        off = float(np.min(upper))
        return Timing(off, 0.0, None, 0.0, "state timestamps only (upper bound)")
    lower_a, low_t_a = np.array(lower), np.array(low_t)
    # Per 2-second bin: tightest bounds; the midline through them gives offset and drift.
    t0 = tu[0]
    span = tu[-1] - t0
    nb = max(1, int(span // 2.0))
    edges = t0 + np.linspace(0, span + 1e-9, nb + 1)
    mids, times, widths = [], [], []
    for b in range(nb):
        iu = (t_up >= edges[b]) & (t_up < edges[b + 1])
        il = (low_t_a >= edges[b]) & (low_t_a < edges[b + 1])
        if iu.any() and il.any():
            hi, lo = upper[iu].min(), lower_a[il].max()
            mids.append(0.5 * (hi + lo))
            widths.append(hi - lo)
            times.append(0.5 * (edges[b] + edges[b + 1]))
    if len(mids) >= 3 and span >= 10.0:
        slope, icpt = np.polyfit(np.array(times), np.array(mids), 1)
        return Timing(float(icpt), float(slope), float(np.median(widths)), 0.0, "bracket+drift")
    hi, lo = float(np.min(upper)), float(np.max(lower_a))
    return Timing(0.5 * (hi + lo), 0.0, hi - lo, 0.0, "bracket")


# ------------------------------------------------------------------ model state and controls


class StateMap:
    """Which qpos/qvel entries the spec's sensors give: the spec's `state_from_sensors`
    (by default `envs.state_map`: jointpos/jointvel of hinges and slides, ballquat and
    ballangvel of ball joints, framequat of a free body), batched."""

    def __init__(self, model: mujoco.MjModel, spec) -> None:
        from envs.spec import RobotSpec
        from envs.state_map import sensor_state_map

        self.model = model
        self.sensor_adr = spec.sensor_index(model)
        m = sensor_state_map(spec, model)
        self.pos_s, self.pos_q, self.vel_s, self.vel_q = m.pos_s, m.pos_q, m.vel_s, m.vel_q
        pos_q, self.quats = m.pos_q.tolist(), m.quats
        overridden = type(spec).state_from_sensors is not RobotSpec.state_from_sensors
        self.custom = spec.state_from_sensors if overridden else None
        covered_q = set(pos_q)
        self.unmapped = [
            mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) or f"joint{j}"
            for j in range(model.njnt)
            if int(model.jnt_qposadr[j]) not in covered_q
        ]
        d = mujoco.MjData(model)
        mujoco.mj_forward(model, d)
        self.template = np.zeros(mujoco.mj_stateSize(model, _FULL))
        mujoco.mj_getState(model, d, self.template, _FULL)
        self.nstate = self.template.size
        self.qpos_at = mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_TIME)
        self.qvel_at = self.qpos_at + model.nq

    @property
    def usable(self) -> bool:
        return self.pos_s.size > 0

    def states(self, sensors: np.ndarray, times: np.ndarray) -> np.ndarray:
        """(B, n_sensors) readings at (B,) times -> (B, nstate) full physics states."""
        out = np.tile(self.template, (sensors.shape[0], 1))
        out[:, 0] = times
        if self.custom is not None:  # the robot's own state_from_sensors, row by row
            nq, nv = self.model.nq, self.model.nv
            for b in range(sensors.shape[0]):
                qpos, qvel = self.custom(self.model, sensors[b])
                out[b, self.qpos_at : self.qpos_at + nq] = qpos
                out[b, self.qvel_at : self.qvel_at + nv] = qvel
            return out
        out[:, self.qpos_at + self.pos_q] = sensors[:, self.pos_s]
        out[:, self.qvel_at + self.vel_q] = sensors[:, self.vel_s]
        for a in self.quats:  # quantized quaternion readings, normalized
            q = out[:, self.qpos_at + a : self.qpos_at + a + 4]
            q /= np.linalg.norm(q, axis=1, keepdims=True)
        return out


def control_grid(
    arrivals: np.ndarray,
    values: np.ndarray,
    safe: np.ndarray,
    disarmed: list[tuple[float, float]],
    centers: np.ndarray,
    dt: float,
) -> np.ndarray:
    """Controls for physics steps sampled at `centers` (any shape C): (*C, nu).

    The command signal holds each value from its arrival; a step's control is its mean over
    the step's interval centred on its sample time (module docstring). While disarmed the
    controller holds its safe command and ignores COMMANDs.
    """
    nu = safe.size
    tau = np.asarray(arrivals, dtype=np.float64)
    vals = np.asarray(values, dtype=np.float64).reshape(-1, nu) - safe
    for off, on in disarmed:
        keep = (tau < off) | (tau >= on)
        tau = np.concatenate([tau[keep], [off]])
        vals = np.concatenate([vals[keep], np.zeros((1, nu))])
    if disarmed:
        order = np.argsort(tau, kind="stable")
        tau, vals = tau[order], vals[order]
    if tau.size == 0:
        return np.broadcast_to(safe, (*np.shape(centers), nu)).copy()
    # cumulative integral of (u - safe) at each breakpoint
    cum = np.concatenate([np.zeros((1, nu)), np.cumsum(vals[:-1] * np.diff(tau)[:, None], axis=0)])

    def integral(x: np.ndarray) -> np.ndarray:
        i = np.searchsorted(tau, x, side="right") - 1
        ic = np.clip(i, 0, tau.size - 1)
        out = cum[ic] + vals[ic] * (x - tau[ic])[..., None]
        return np.where((i >= 0)[..., None], out, 0.0)

    c = np.asarray(centers, dtype=np.float64)
    return safe + (integral(c + dt / 2) - integral(c - dt / 2)) / dt


# ----------------------------------------------------------------------------- simulation


class Simulator:
    """Batched open-loop rollouts of one robot model (and perturbed copies of it)."""

    def __init__(self, spec, model: mujoco.MjModel, nthread: int = 2) -> None:
        self.spec = spec
        self.model = model
        self.dt = float(model.opt.timestep)
        self.map = StateMap(model, spec)
        self.sensor_adr = spec.sensor_index(model)
        self.data = [mujoco.MjData(model) for _ in range(max(1, nthread))]
        lo, hi = model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1]
        limited = model.actuator_ctrllimited.astype(bool)
        self.ctrl_lo = np.where(limited, lo, -np.inf)
        self.ctrl_hi = np.where(limited, hi, np.inf)

    def run(
        self,
        models: list[mujoco.MjModel] | mujoco.MjModel,
        init: np.ndarray,
        ctrl: np.ndarray,
        want_state: bool = False,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(B, nstate) initial states, (B, nstep, nu) controls -> spec sensors (B, nstep, n)
        (true values, sampled as module docstring says) and optionally full states."""
        from mujoco import rollout

        ctrl = np.clip(ctrl, self.ctrl_lo, self.ctrl_hi)
        b, nstep = ctrl.shape[0], ctrl.shape[1]
        state = np.empty((b, nstep, self.map.nstate))
        sens = np.empty((b, nstep, self.model.nsensordata))
        data = self.data[: max(1, min(len(self.data), b))]
        rollout.rollout(
            models,
            data,
            np.ascontiguousarray(init),
            np.ascontiguousarray(ctrl),
            state=state,
            sensordata=sens,
        )
        out = sens[..., self.sensor_adr]
        return out, (state if want_state else None)


@dataclass
class Replay:
    """The whole run replayed open-loop from its first STATE."""

    t: np.ndarray
    """(S,) logged STATE times, from 0."""
    logged: np.ndarray
    sim: np.ndarray
    """(S, n) simulated sensors at the logged STATE times."""
    grid_t: np.ndarray
    """(nstep,) times of the simulation's samples, from 0."""
    qpos: np.ndarray
    """(nstep, nq) simulated joint positions (for rendering)."""
    ctrl: np.ndarray
    """(nstep, nu) the controls the simulation applied."""


def replay(sim: Simulator, tr: Trace, latency_s: float, model=None) -> Replay:
    """Start from the first logged STATE, drive open-loop by the logged commands."""
    if not sim.map.usable:
        raise ReplayError("no jointpos sensor in the robot's layout: cannot set the initial state")
    dt = sim.dt
    t0 = tr.t[0]
    nstep = int(np.ceil((tr.t[-1] - t0) / dt + 0.5)) + 1
    centers = t0 + dt * np.arange(nstep)
    ctrl = control_grid(tr.arrivals(latency_s), tr.cmd, tr.safe, tr.disarmed, centers, dt)
    init = sim.map.states(tr.sensors[:1], np.array([t0 - dt]))
    out, state = sim.run(model or sim.model, init, ctrl[None], want_state=True)
    idx = np.clip(np.rint((tr.t - t0) / dt).astype(int), 0, nstep - 1)
    simulated = _quantize(sim.spec, out[0, idx], tr.resolution)
    q = state[0, :, sim.map.qpos_at : sim.map.qpos_at + sim.model.nq]
    return Replay(tr.t - t0, tr.sensors, simulated, centers - t0, q, ctrl)


def _quantize(spec, x: np.ndarray, resolution: np.ndarray | None = None) -> np.ndarray:
    """The deterministic part of the spec's sensor model (encoder resolution)."""
    res = spec.resolution if resolution is None else resolution
    if not np.any(res > 0):
        return x
    q = np.where(res > 0, res, 1.0)
    return np.where(res > 0, np.round(x / q) * q, x)


@dataclass
class Windows:
    """Multiple-shooting windows over one or more traces, laid out for batched rollouts."""

    skipped: int
    """Windows left out (irregular STATE timing)."""
    init: np.ndarray
    """(W, nstate) logged state at each window start."""
    centers: np.ndarray
    """(W, nstep) sample times of each window's steps (controller clock)."""
    trace_of: np.ndarray
    """(W,) which trace each window comes from."""
    w_idx: np.ndarray
    s_idx: np.ndarray
    """Flat (M,) window and step indices of the logged samples inside windows ..."""
    logged: np.ndarray
    """(M, n) ... and the logged values there."""
    t_in: np.ndarray
    """(M,) time since the window's start."""


def make_windows(
    sim: Simulator,
    traces: list[Trace],
    window_s: float,
    max_s: float | None = None,
    regular_only: bool = False,
) -> Windows:
    """A window from the logged STATE nearest every `window_s`, `window_s` long.

    `regular_only`: leave out windows whose STATEs are not evenly spaced at the STATE period
    (a stalled controller or lost frames: the stamps there are not to be trusted).
    """
    dt = sim.dt
    period = 1.0 / sim.spec.control_hz
    skipped = 0
    nstep = max(2, int(round(window_s / dt)) + 1)
    inits, centers, trace_of, w_idx, s_idx, logged, t_in = [], [], [], [], [], [], []
    w = 0
    for k, tr in enumerate(traces):
        end = tr.t[-1] if max_s is None else min(tr.t[-1], tr.t[0] + max_s)
        starts = np.arange(tr.t[0], end - 0.5 * window_s, window_s)
        for ts in starts:
            j = int(np.searchsorted(tr.t, ts))
            if j >= tr.t.size - 1:
                break
            tj = tr.t[j]
            inside = np.flatnonzero((tr.t > tj) & (tr.t <= tj + (nstep - 1) * dt + 1e-9))
            if inside.size == 0:
                continue
            if regular_only and period:
                gaps = np.diff(tr.t[j : inside[-1] + 1])
                if np.any(np.abs(gaps - period) > 0.25 * period):
                    skipped += 1
                    continue
            inits.append(sim.map.states(tr.sensors[j : j + 1], np.array([tj - dt]))[0])
            centers.append(tj + dt * np.arange(nstep))
            trace_of.append(k)
            steps = np.rint((tr.t[inside] - tj) / dt).astype(int)
            w_idx.append(np.full(inside.size, w))
            s_idx.append(steps)
            logged.append(tr.sensors[inside])
            t_in.append(tr.t[inside] - tj)
            w += 1
    if w == 0 and skipped:
        raise ReplayError(f"every {window_s:g} s window has irregular STATE timing")
    if w == 0:
        raise ReplayError(f"the run is shorter than one {window_s:g} s window")
    return Windows(
        skipped,
        np.array(inits),
        np.array(centers),
        np.array(trace_of),
        np.concatenate(w_idx),
        np.concatenate(s_idx),
        np.concatenate(logged),
        np.concatenate(t_in),
    )


def window_controls(
    win: Windows, traces: list[Trace], latency_s: float, dt: float, shifts: np.ndarray | None = None
) -> np.ndarray:
    """(W, nstep, nu) controls of every window; `shifts` (len(traces),) moves each trace's
    command times (the timing search)."""
    out = np.empty((*win.centers.shape, traces[0].safe.size))
    for k, tr in enumerate(traces):
        sel = win.trace_of == k
        if not sel.any():
            continue
        extra = 0.0 if shifts is None else float(shifts[k])
        out[sel] = control_grid(
            tr.arrivals(latency_s + extra), tr.cmd, tr.safe, tr.disarmed, win.centers[sel], dt
        )
    return out


def window_errors(sim: Simulator, win: Windows, ctrl: np.ndarray, models=None) -> np.ndarray:
    """(M, n) simulated - logged at every logged sample inside the windows."""
    out, _ = sim.run(models or sim.model, win.init, ctrl)
    return out[win.w_idx, win.s_idx] - win.logged


def refine_offset(sim: Simulator, tr: Trace, latency_s: float, window_s: float) -> None:
    """Narrow a wide clock-offset bracket by the replay error over it (in place)."""
    tm = tr.timing
    if tm.window_s is None or tm.window_s <= 2 * sim.dt:
        return
    half = tm.window_s / 2
    try:
        win = make_windows(sim, [tr], window_s, max_s=20.0, regular_only=True)
    except ReplayError:
        return  # too short or too irregular to tell: the bracket's middle stands
    cands = np.linspace(-half, half, int(np.ceil(tm.window_s / (sim.dt / 2))) + 1)
    scale = _scales([tr])
    W = win.init.shape[0]
    ctrl = np.concatenate(
        [window_controls(win, [tr], latency_s, sim.dt, np.array([c])) for c in cands]
    )
    out, _ = sim.run(sim.model, np.tile(win.init, (cands.size, 1)), ctrl)
    costs = [
        float(np.mean(((out[k * W : (k + 1) * W][win.w_idx, win.s_idx] - win.logged) / scale) ** 2))
        for k in range(cands.size)
    ]
    best = int(np.argmin(costs))
    # command arrivals move later by c: the offset (host - ctrl) is smaller by c
    tm.offset_s -= float(cands[best]) * (1.0 + tm.drift)
    tm.method += "+dynamics"


def _scales(traces: list[Trace]) -> np.ndarray:
    """Per-sensor scale for a dimensionless error: the logged signal's standard deviation."""
    allv = np.concatenate([tr.sensors for tr in traces])
    s = np.std(allv, axis=0)
    return np.where(s > 1e-9, s, 1.0)


# ----------------------------------------------------------------------------- metrics


def metrics(rp: Replay, spec, horizon_s: float, divergence_frac: float) -> dict[str, Any]:
    """Per-sensor RMSE (whole run and first `horizon_s`), correlation, time to divergence."""
    names = [s.name for s in spec.sensors]
    err = rp.sim - rp.logged
    first = rp.t <= horizon_s + 1e-9
    rng = np.ptp(rp.logged, axis=0)
    floor = np.maximum(10 * spec.resolution, 1e-6)
    thresh = np.maximum(divergence_frac * rng, floor)
    out: dict[str, Any] = {
        "rmse": {},
        "rmse_first": {},
        "correlation": {},
        "correlation_first": {},
        "time_to_divergence_s": {},
        "divergence_threshold": {},
    }
    for i, n in enumerate(names):
        e = err[:, i]
        out["rmse"][n] = _r(np.sqrt(np.mean(e**2)))
        out["rmse_first"][n] = _r(np.sqrt(np.mean(e[first] ** 2)))
        out["correlation"][n] = _corr(rp.logged[:, i], rp.sim[:, i])
        out["correlation_first"][n] = _corr(rp.logged[first, i], rp.sim[first, i])
        over = np.flatnonzero(np.abs(e) > thresh[i])
        out["time_to_divergence_s"][n] = None if over.size == 0 else _r(rp.t[over[0]], 4)
        out["divergence_threshold"][n] = _r(thresh[i])
    return out


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.size < 3 or np.std(a) < 1e-12 or np.std(b) < 1e-12:
        return None
    return _r(np.corrcoef(a, b)[0, 1], 4)


def _r(x: float, digits: int = 6) -> float:
    return float(f"{float(x):.{digits}g}")


def window_rmse(err: np.ndarray, spec) -> dict[str, float]:
    return {s.name: _r(np.sqrt(np.mean(err[:, i] ** 2))) for i, s in enumerate(spec.sensors)}


# ----------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class Entry:
    """One MjModel field on named objects, in the randomization schema's terms."""

    key: str
    field: str
    targets: tuple[str, ...]
    index: tuple[int, ...] | None = None


@dataclass(frozen=True)
class FitParam:
    """A fitted quantity: a multiplier of nominal model values (log-scale), or latency."""

    name: str
    entries: tuple[Entry, ...] = ()
    doc: str = ""

    @property
    def is_latency(self) -> bool:
        return not self.entries


def _names(model: mujoco.MjModel, obj: int, count: int) -> list[str]:
    return [mujoco.mj_id2name(model, obj, i) or "" for i in range(count)]


def fit_params(model: mujoco.MjModel) -> dict[str, FitParam]:
    """The parameters `fit=[...]` knows for a model, derived from its names:

    damping / coulomb / armature: the field on every 1-dof joint; <joint>_damping etc. on one
    joint (a '_joint' suffix dropped: arm_joint -> arm_damping); <body>_mass; <actuator>_gain
    (gainprm[0], with the back-EMF / velocity bias biasprm[2] scaled the same: for a DC motor
    both are kt/Rm), back_emf (biasprm[2] alone); latency (command latency, seconds).
    """
    J = mujoco.mjtObj.mjOBJ_JOINT
    joints = [
        n
        for j, n in enumerate(_names(model, J, model.njnt))
        if n
        and int(model.jnt_type[j])
        in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))
    ]
    out: dict[str, FitParam] = {}
    fields = {"damping": "dof_damping", "coulomb": "dof_frictionloss", "armature": "dof_armature"}
    for short, f in fields.items():
        out[short] = FitParam(short, (Entry(short, f, tuple(joints)),), f"{f} on all joints")
        for j in joints:
            base = j[: -len("_joint")] if j.endswith("_joint") else j
            name = f"{base}_{short}"
            out[name] = FitParam(name, (Entry(name, f, (j,)),), f"{f} on {j}")
    for b in _names(model, mujoco.mjtObj.mjOBJ_BODY, model.nbody)[1:]:
        if b:
            out[f"{b}_mass"] = FitParam(
                f"{b}_mass", (Entry(f"{b}_mass", "body_mass", (b,)),), f"body_mass of {b}"
            )
    acts = [a for a in _names(model, mujoco.mjtObj.mjOBJ_ACTUATOR, model.nu) if a]
    for a in acts:
        out[f"{a}_gain"] = FitParam(
            f"{a}_gain",
            (
                Entry(f"{a}_gain", "actuator_gainprm", (a,), (0,)),
                Entry(f"{a}_back_emf", "actuator_biasprm", (a,), (2,)),
            ),
            f"actuator_gainprm[0] and biasprm[2] of {a}",
        )
    if acts:
        out["back_emf"] = FitParam(
            "back_emf",
            (Entry("back_emf", "actuator_biasprm", tuple(acts), (2,)),),
            "actuator_biasprm[2]",
        )
    out["latency"] = FitParam("latency", (), "command latency (s)")
    return out


@dataclass
class _Bound:
    attr: str
    rows: np.ndarray
    cols: np.ndarray | None
    nominal: np.ndarray


def _bind(model: mujoco.MjModel, e: Entry) -> _Bound | None:
    """Rows/cols of an entry with non-zero nominal values (a multiplier of 0 fits nothing)."""
    from envs.randomization import _NAME_COUNT, _PREFIX_OBJ, _jnt_ndof

    obj = next(o for p, o in _PREFIX_OBJ.items() if e.field.startswith(p))
    names = _names(model, obj, getattr(model, _NAME_COUNT[obj]))
    ids = [i for i, n in enumerate(names) if any(fnmatch.fnmatchcase(n, t) for t in e.targets)]
    if e.field.startswith("dof_"):
        rows = (
            np.concatenate(
                [
                    np.arange(model.jnt_dofadr[j], model.jnt_dofadr[j] + _jnt_ndof(model, j))
                    for j in ids
                ]
            )
            if ids
            else np.zeros(0, int)
        )
    else:
        rows = np.array(ids, dtype=int)
    arr = getattr(model, e.field)
    cols = None if e.index is None else np.array(e.index)
    nom = arr[rows][:, cols] if cols is not None else arr[rows]
    nz = np.any(np.atleast_2d(nom.reshape(rows.size, -1)) != 0, axis=1) if rows.size else rows
    rows = rows[nz] if rows.size else rows
    if rows.size == 0:
        return None
    nom = arr[rows][:, cols] if cols is not None else arr[rows]
    return _Bound(e.field, rows, cols, np.array(nom, dtype=np.float64))


def _set(model: mujoco.MjModel, b: _Bound, mult: float) -> None:
    arr = getattr(model, b.attr)
    if b.cols is None:
        arr[b.rows] = b.nominal * mult
    else:
        sub = arr[b.rows]
        sub[:, b.cols] = b.nominal * mult
        arr[b.rows] = sub


@dataclass
class FitResult:
    params: list[str]
    values: dict[str, float]
    """Fitted multiplier per parameter (latency: seconds)."""
    nominal: dict[str, Any]
    """Nominal model values per parameter (latency: the starting value)."""
    error_before: float
    error_after: float
    """Normalized multiple-shooting RMS error (the objective) with nominal and fitted values."""
    rmse_before: dict[str, float]
    rmse_after: dict[str, float]
    """Per-sensor multiple-shooting RMSE."""
    windows: int
    window_s: float
    evaluations: int
    message: str
    entries: dict[str, tuple[Entry, ...]]
    example: dict[str, np.ndarray] = field(default_factory=dict)
    """Some windows (logged, nominal, fitted), for the report's figure."""
    shifts: list[float] = field(default_factory=list)
    """Per trace: fitted command timing, s, from the middle of its clock bracket."""
    skipped: int = 0
    """Windows left out (irregular STATE timing)."""

    @property
    def latency_s(self) -> float | None:
        return self.values.get("latency")


def resolve_params(model: mujoco.MjModel, names: list[str]) -> list[FitParam]:
    known = fit_params(model)
    out = []
    for n in names:
        if n not in known:
            raise ReplayError(
                f"fit: unknown parameter '{n}' (known for this model: {sorted(known)})"
            )
        p = known[n]
        if not p.is_latency and all(_bind(model, e) is None for e in p.entries):
            raise ReplayError(f"fit: parameter '{n}' is 0 in the model; a multiplier cannot fit it")
        out.append(p)
    if len({p.name for p in out}) != len(out):
        raise ReplayError("fit: a parameter is named twice")
    return out


def fit(
    sim: Simulator,
    traces: list[Trace],
    names: list[str],
    latency_s: float,
    window_s: float,
    bound: float = 5.0,
    max_nfev: int = 60,
) -> FitResult:
    """Least-squares fit of log-multipliers (and latency) on multiple-shooting windows.

    Each trace's command timing is a nuisance parameter inside its clock bracket (a log only
    brackets the host/controller offset to about one STATE period): it is fitted first with
    the nominal model, which gives the error before, and then together with the parameters.
    With `latency` among the parameters the two are one delay: arrivals are put at the
    earliest time the bracket allows and the fitted latency is the delay from there.
    """
    pb = _FitProblem(sim, traces, names, latency_s, window_s, bound)
    timing_only = np.arange(pb.x0.size) >= pb.npar
    x_before, _ = pb.solve(pb.x0, timing_only, max_nfev)
    x_after, message = pb.solve(x_before, np.ones(pb.x0.size, dtype=bool), max_nfev)
    r0, r1 = pb.residuals_many([x_before, x_after])
    return pb.result(x_after, r0, r1, message)


class _FitProblem:
    """The fit's unknowns (log-multipliers, latency, per-trace timing shifts), their bounds
    and steps, and the batched residuals of the multiple-shooting windows."""

    def __init__(self, sim, traces, names, latency_s: float, window_s: float, bound: float):
        self.sim, self.traces, self.latency_s, self.window_s = sim, traces, latency_s, window_s
        base = self.base = sim.model
        params = self.params = resolve_params(base, names)
        self.win = make_windows(sim, traces, window_s, regular_only=True)
        self.scale = _scales(traces)
        self.bounds_of = {
            p.name: [b for e in p.entries if (b := _bind(base, e)) is not None] for p in params
        }
        lat_i = self.lat_i = next((i for i, p in enumerate(params) if p.is_latency), None)
        widths = np.array([tr.timing.window_s or 0.0 for tr in traces])
        if lat_i is None:
            self.shift_of = [k for k, w in enumerate(widths) if w > 2 * sim.dt]
            self.fixed_shift = np.zeros(len(traces))
        else:
            self.shift_of = []
            self.fixed_shift = -widths / 2
        npar = self.npar = len(params)
        nsh = len(self.shift_of)
        shift_of = self.shift_of
        self.x0 = np.zeros(npar + nsh)
        self.lo = np.concatenate([np.full(npar, -np.log(bound)), -widths[shift_of] / 2])
        self.hi = np.concatenate([np.full(npar, np.log(bound)), widths[shift_of] / 2])
        self.step = np.concatenate([np.full(npar, 0.01), np.full(nsh, 2e-4)])
        self.xscale = np.concatenate([np.ones(npar), np.full(nsh, 1e-3)])
        if lat_i is not None:
            self.x0[lat_i], self.lo[lat_i] = max(latency_s, 0.0), 0.0
            self.hi[lat_i] = max(0.1, 2 * latency_s)
            self.step[lat_i], self.xscale[lat_i] = 5e-4, 1e-2
        self.nfev = 0

    def model_for(self, x: np.ndarray) -> mujoco.MjModel:
        m = _copy(self.base)
        for i, p in enumerate(self.params):
            if not p.is_latency:
                for b in self.bounds_of[p.name]:
                    _set(m, b, float(np.exp(x[i])))
        return m

    def lat_of(self, x: np.ndarray) -> float:
        return float(x[self.lat_i]) if self.lat_i is not None else self.latency_s

    def shifts_of(self, x: np.ndarray) -> np.ndarray:
        sh = self.fixed_shift.copy()
        sh[self.shift_of] = x[self.npar :]
        return sh

    def residuals_many(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        """Evaluate several parameter vectors in one batched rollout."""
        win, sim = self.win, self.sim
        W = win.init.shape[0]
        models, ctrls = [], []
        for x in xs:
            m = self.model_for(x)
            models.extend([m] * W)
            ctrls.append(
                window_controls(win, self.traces, self.lat_of(x), sim.dt, self.shifts_of(x))
            )
        init = np.tile(win.init, (len(xs), 1))
        out, _ = sim.run(models, init, np.concatenate(ctrls))
        self.nfev += len(xs)
        res = []
        for k in range(len(xs)):
            o = out[k * W : (k + 1) * W]
            e = (o[win.w_idx, win.s_idx] - win.logged) / self.scale
            res.append(np.nan_to_num(e, nan=1e3, posinf=1e3, neginf=-1e3).ravel())
        return res

    def solve(self, x_start: np.ndarray, free: np.ndarray, max_nfev: int) -> tuple[np.ndarray, str]:
        """Least squares over the `free` entries of x, the rest held at x_start."""
        from scipy.optimize import least_squares

        if not free.any():
            return x_start, "nothing to fit"
        cache: dict[bytes, np.ndarray] = {}
        step, hi = self.step, self.hi

        def full(z: np.ndarray) -> np.ndarray:
            x = x_start.copy()
            x[free] = z
            return x

        def fun(z: np.ndarray) -> np.ndarray:
            key = z.tobytes()
            if key not in cache:
                cache.clear()
                cache[key] = self.residuals_many([full(z)])[0]
            return cache[key]

        def jac(z: np.ndarray) -> np.ndarray:
            x = full(z)
            idx = np.flatnonzero(free)
            xs = [x]
            for i in idx:
                xi = x.copy()
                xi[i] += step[i] if x[i] + step[i] <= hi[i] else -step[i]
                xs.append(xi)
            rs = self.residuals_many(xs)
            cache.clear()
            cache[z.tobytes()] = rs[0]
            cols = [(rs[k + 1] - rs[0]) / (xs[k + 1][i] - x[i]) for k, i in enumerate(idx)]
            return np.stack(cols, axis=1)

        sol = least_squares(
            fun,
            x_start[free],
            jac=jac,
            bounds=(self.lo[free], hi[free]),
            method="trf",
            x_scale=self.xscale[free],
            max_nfev=max_nfev,
            ftol=1e-8,
            xtol=1e-8,
            gtol=1e-10,
        )
        return full(sol.x), str(sol.message)

    def result(self, x_after, r0, r1, message: str) -> FitResult:
        """The FitResult of the nominal (timing-fitted) and fitted vectors and residuals."""
        win, traces, scale = self.win, self.traces, self.scale
        n = traces[0].sensors.shape[1]
        e0 = r0.reshape(-1, n) * scale
        e1 = r1.reshape(-1, n) * scale
        values: dict[str, float] = {}
        nominal: dict[str, Any] = {}
        for i, p in enumerate(self.params):
            if p.is_latency:
                values[p.name] = float(x_after[i])
                nominal[p.name] = self.latency_s
            else:
                values[p.name] = float(np.exp(x_after[i]))
                nominal[p.name] = {
                    b.attr: b.nominal.ravel().tolist() for b in self.bounds_of[p.name]
                }
        # some windows for the figure: the first few of the first trace
        ex_idx = np.flatnonzero(win.trace_of == 0)[:6]
        example: dict[str, np.ndarray] = {}
        if ex_idx.size:
            sel = np.isin(win.w_idx, ex_idx)
            example = {
                "t": win.centers[win.w_idx[sel], win.s_idx[sel]] - traces[0].t[0],
                "logged": win.logged[sel],
                "nominal": (e0 + win.logged)[sel],
                "fitted": (e1 + win.logged)[sel],
                "window": win.w_idx[sel],
            }
        return FitResult(
            params=[p.name for p in self.params],
            values=values,
            nominal=nominal,
            error_before=float(np.sqrt(np.mean(r0**2))),
            error_after=float(np.sqrt(np.mean(r1**2))),
            rmse_before=window_rmse(e0, self.sim.spec),
            rmse_after=window_rmse(e1, self.sim.spec),
            windows=int(win.init.shape[0]),
            window_s=self.window_s,
            evaluations=self.nfev,
            message=message,
            entries={p.name: p.entries for p in self.params},
            example=example,
            shifts=self.shifts_of(x_after).tolist(),
            skipped=win.skipped,
        )


def apply_fit(model: mujoco.MjModel, res: FitResult) -> mujoco.MjModel:
    """A copy of `model` with the fitted multipliers written in."""
    m = _copy(model)
    for name, entries in res.entries.items():
        for e in entries:
            b = _bind(model, e)
            if b is not None:
                _set(m, b, res.values[name])
    return m


def _copy(m: mujoco.MjModel) -> mujoco.MjModel:
    import copy

    return copy.copy(m)
