"""`Plant`: one robot's MJCF stepped one physics step at a time on `mj_step`, through the
one plant model (`envs.plant`: latency in physics steps, action noise, the spec's sensor
model), with a reality applied (`envs.randomization.apply_reality`) and torque off as NaN
commands (`sim.torque_off`). Both controller stand-ins step it: the framed-protocol
controller (`sim.robot`) and the emulated servo bus (`sim.bus_robot`).

Sim floor: imports envs and ppo_robot.cli.
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np

from firmware_bridge.sim.torque_off import TorqueOff
from ppo_robot.cli import UserError


class Plant:
    """The robot's MJCF stepped one physics step at a time, through the one plant model
    (`envs.plant`: latency in physics steps, action noise, the spec's sensor model)."""

    def __init__(self, spec, cfg: Any) -> None:
        from envs.plant import PlantModel, ctrl_bounds, spec_reader
        from envs.randomization import Randomization, apply_reality, load

        self.spec = spec
        self.model = spec.load_model(cfg.model_xml)
        rand = load(cfg.reality, cfg.robot) if cfg.reality else Randomization()
        self.binder, self.pert = apply_reality(
            rand, self.model, tuple(s.name for s in spec.sensors), cfg.seed
        )
        self.data = mujoco.MjData(self.model)
        self.torque = TorqueOff(self.model)  # NaN command = torque off (safe_mode 'off')
        self.sensor_idx = spec.sensor_index(self.model)
        n = spec.n_sensors
        self.latency_s = float(cfg.latency_s) + self.pert.latency_s
        self.dt = self.model.opt.timestep
        lo, hi = ctrl_bounds(self.model)
        self.io = PlantModel(
            1,
            self.dt,
            lo,
            hi,
            spec.safe_command,
            read=spec_reader(spec, self.model),
            base_resolution=spec.resolution,
            obs_noise_std=np.full(n, float(cfg.sensor_noise_std)) + self.binder.obs_noise_std,
            action_noise_std=rand.action_noise_std,
            max_latency_s=self.latency_s,
            seed=cfg.seed,
        )
        self.io.configure(0, self.latency_s, self.pert.sensor_bias, self.pert.resolution_scale)
        self.initial_qpos = (
            None if cfg.initial_qpos is None else np.asarray(cfg.initial_qpos, float)
        )
        if self.initial_qpos is not None and self.initial_qpos.size != self.model.nq:
            raise UserError(
                f"initial_qpos: needs {self.model.nq} values, got {self.initial_qpos.size}"
            )
        self.reset()

    def reset(self, qpos: np.ndarray | None = None, qvel: np.ndarray | None = None) -> None:
        """Back to the initial state (or to `qpos`, `qvel`); the command history stays."""
        mujoco.mj_resetData(self.model, self.data)
        q = self.initial_qpos if qpos is None else qpos
        if q is not None:
            self.data.qpos[:] = q
        if qvel is not None:
            self.data.qvel[:] = qvel
        mujoco.mj_forward(self.model, self.data)

    def command(self, cmd: np.ndarray) -> None:
        """A command arrived now; it reaches the actuators after the latency."""
        self.io.command(np.asarray(cmd, dtype=np.float64)[None])

    def hold(self, cmd: np.ndarray) -> None:
        """The actuators see `cmd` from the next step on (no latency): the safe state."""
        self.io.hold(0, np.clip(cmd, self.io.ctrl_low, self.io.ctrl_high))

    def step(self) -> None:
        """One physics step with the control the plant model gives this step."""
        self._apply(self.io.controls(1)[0, 0])
        mujoco.mj_step(self.model, self.data)

    def _apply(self, ctrl: np.ndarray) -> None:
        """The one place a control reaches the model's actuators (NaN = torque off)."""
        self.torque.apply(self.data, ctrl)

    def sensors(self) -> np.ndarray:
        return self.io.sense(self.data.sensordata[None])[0]
