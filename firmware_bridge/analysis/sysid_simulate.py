"""Open-loop simulation of a logged run on the robot's MJCF: initial states from readings,
the control signal from the logged commands, batched rollouts, and the whole-run replay.

Analysis floor (reads `sysid_trace.Trace`). `replay` starts the model from the first logged
STATE and drives it open-loop by the logged commands; `sysid_windows` does the same from a
logged STATE every `window_s` (multiple shooting).

Conventions (the same as `firmware_bridge.sim_robot` and the batched engine):
- a STATE stamped t holds `sensordata` after a physics step, i.e. the sensors MuJoCo
  computed at the start of that step; the simulated sample at t is taken the same way;
- a command takes effect at the first physics step after it reaches the controller (zero
  order hold). The simulation spreads a command that arrives inside a physics step over that
  step and the next in proportion (the hold averaged over the arrival phase), so the replay
  error is continuous in timing and latency, which the fit differentiates;
- before the first command the actuators hold `Trace.safe` (the soft-start origin of the
  first reading), while disarmed what `Trace.held` says.

A simulated episode reads its first STATE at its initial state (not after a step) and logs
that state exactly (`Trace.start`): `replay` then starts there, at the first STATE's time,
and reproduces the episode to the sensors' resolution on the same model.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from firmware_bridge.analysis.sysid_trace import ReplayError, Trace

_FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS
_ON_EDGE = 1e-9
"""An arrival this close (in steps) to a step's end is on it: clock arithmetic rounds."""


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

    def exact(self, qpos: np.ndarray, qvel: np.ndarray, time: float) -> np.ndarray | None:
        """(1, nstate) the full physics state of (qpos, qvel) at `time`; None where their
        sizes are not this model's."""
        if qpos.size != self.model.nq or qvel.size != self.model.nv:
            return None
        out = self.template.copy()[None]
        out[0, 0] = time
        out[0, self.qpos_at : self.qpos_at + qpos.size] = qpos
        out[0, self.qvel_at : self.qvel_at + qvel.size] = qvel
        return out

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
    held: list[np.ndarray] | None = None,
) -> np.ndarray:
    """Controls for physics steps sampled at `centers` (any shape C): (*C, nu).

    The command signal is `safe` before the first arrival and holds each value from its
    arrival; a step's control is its mean over the step's interval centred on its sample
    time (module docstring), exactly the value held where no arrival falls inside the step
    (an open-loop replay of a sensitive plant amplifies even rounding). While disarmed the
    controller holds its safe command (`held`, one per interval; default `safe`) and
    ignores COMMANDs.
    """
    nu = safe.size
    tau = np.asarray(arrivals, dtype=np.float64)
    level = np.asarray(values, dtype=np.float64).reshape(-1, nu)
    for i, (off, on) in enumerate(disarmed):
        keep = (tau < off) | (tau >= on)
        hold = safe if not held else np.asarray(held[i], dtype=np.float64)
        tau = np.concatenate([tau[keep], [off]])
        level = np.concatenate([level[keep], hold.reshape(1, nu)])
    if disarmed:
        order = np.argsort(tau, kind="stable")
        tau, level = tau[order], level[order]
    if tau.size == 0:
        return np.broadcast_to(safe, (*np.shape(centers), nu)).copy()
    vals = level - safe
    # cumulative integral of (u - safe) at each breakpoint
    cum = np.concatenate([np.zeros((1, nu)), np.cumsum(vals[:-1] * np.diff(tau)[:, None], axis=0)])
    c = np.asarray(centers, dtype=np.float64)
    # pieces at the step's ends; an arrival within rounding of an end is on it
    eps = _ON_EDGE * dt
    lo = np.searchsorted(tau, c - dt / 2 + eps, side="right") - 1
    hi = np.searchsorted(tau, c + dt / 2 - eps, side="right") - 1

    def integral(x: np.ndarray, i: np.ndarray) -> np.ndarray:
        ic = np.clip(i, 0, tau.size - 1)
        out = cum[ic] + vals[ic] * (x - tau[ic])[..., None]
        return np.where((i >= 0)[..., None], out, 0.0)

    mean = safe + (integral(c + dt / 2, hi) - integral(c - dt / 2, lo)) / dt
    whole = np.where((lo >= 0)[..., None], level[np.clip(lo, 0, tau.size - 1)], safe)
    return np.where((lo == hi)[..., None], whole, mean)


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

    def sense(self, model: mujoco.MjModel, state: np.ndarray, ctrl: np.ndarray) -> np.ndarray:
        """The spec's sensors (true values) at full physics `state` with control `ctrl`."""
        d = self.data[0]
        mujoco.mj_resetData(model, d)
        mujoco.mj_setState(model, d, state, _FULL)
        d.ctrl[:] = np.clip(ctrl, self.ctrl_lo, self.ctrl_hi)
        mujoco.mj_forward(model, d)
        return d.sensordata[self.sensor_adr].copy()

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
    """Start from the first logged STATE (the logged initial state where the log has one),
    drive open-loop by the logged commands."""
    if not sim.map.usable:
        raise ReplayError("no jointpos sensor in the robot's layout: cannot set the initial state")
    dt = sim.dt
    t0 = tr.t[0]
    init, lag = _start(sim, tr)
    nstep = int(np.ceil((tr.t[-1] - t0) / dt + 0.5)) + 1 - lag
    centers = t0 + dt * (lag + np.arange(nstep))
    ctrl = control_grid(tr.arrivals(latency_s), tr.cmd, tr.safe, tr.disarmed, centers, dt, tr.held)
    out, state = sim.run(model or sim.model, init, ctrl[None], want_state=True)
    # the sample stamped t is sensordata after the step that ends at t: computed at t - dt
    idx = np.rint((tr.t - t0) / dt).astype(int) - lag
    raw = out[0, np.clip(idx, 0, nstep - 1)]
    if lag:  # the first STATE: the start state itself, its actuators held
        raw[idx < 0] = sim.sense(model or sim.model, init[0], tr.safe)
    simulated = _quantize(sim.spec, raw, tr.resolution)
    q = state[0, :, sim.map.qpos_at : sim.map.qpos_at + sim.model.nq]
    return Replay(tr.t - t0, tr.sensors, simulated, centers - t0, q, ctrl)


def _start(sim: Simulator, tr: Trace) -> tuple[np.ndarray, int]:
    """(1, nstate) where the replay starts, and in physics steps how much later than one
    step before the first STATE: the logged initial state at the first STATE's time (1), or
    the state the first readings give one step before it (0: the sample convention). A
    logged state that does not fit the model is noted on the trace."""
    t0 = tr.t[0]
    if tr.start is not None:
        exact = sim.map.exact(tr.start.qpos, tr.start.qvel, t0)
        if exact is not None:
            return exact, 1
        tr.notes.append(
            f"the logged initial state ({tr.start.qpos.size} qpos, {tr.start.qvel.size} qvel) "
            f"does not fit the model ({sim.model.nq}, {sim.model.nv}): the replay starts "
            "from the readings"
        )
    return sim.map.states(tr.sensors[:1], np.array([t0 - sim.dt])), 0


def _quantize(spec, x: np.ndarray, resolution: np.ndarray | None = None) -> np.ndarray:
    """The deterministic part of the spec's sensor model (encoder resolution)."""
    res = spec.resolution if resolution is None else resolution
    if not np.any(res > 0):
        return x
    q = np.where(res > 0, res, 1.0)
    return np.where(res > 0, np.round(x / q) * q, x)
