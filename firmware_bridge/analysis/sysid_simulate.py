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
  error is continuous in timing and latency, which the fit differentiates.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from firmware_bridge.analysis.sysid_trace import ReplayError, Trace

_FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS


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
