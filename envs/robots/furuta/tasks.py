"""The Furuta pendulum's tasks: `swing_up` (the default) and `balance`.

Pendulum angle is 0 hanging down and +-pi upright; both tasks observe
(arm angle, cos and sin of the pendulum angle, both velocities).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from envs.spec import Objective, RobotSpec, TaskInputs, wrap_angle

UPRIGHT_TOL = 0.2
"""Success: pendulum within this angle (rad) of upright ..."""
HOLD_S = 2.0
"""... for every control step of the final HOLD_S seconds."""
OBS_NAMES = ("arm_angle", "cos_pend", "sin_pend", "arm_velocity", "pend_velocity")


@dataclass(frozen=True)
class SwingUp(Objective):
    """Swing the pendulum up from rest hanging down and balance it upright, with the arm
    inside its travel."""

    name: str = "swing_up"
    obs_names: tuple[str, ...] = OBS_NAMES
    episode_s: float = 5.0
    start_spread: float = 0.05
    """Initial joint angles and velocities: uniform in +-this around hanging down at rest."""

    def observe(self, spec: RobotSpec, sensors: np.ndarray, inputs: TaskInputs) -> np.ndarray:
        theta = sensors[..., 0]
        alpha = sensors[..., 1]
        obs = np.stack(
            [theta, np.cos(alpha), np.sin(alpha), sensors[..., 2], sensors[..., 3]], axis=-1
        )
        return obs.astype(np.float32)

    def reward(
        self,
        spec: RobotSpec,
        sensors: np.ndarray,
        command: np.ndarray,
        action: np.ndarray,
        inputs: TaskInputs,
    ) -> np.ndarray:
        theta = sensors[..., 0]
        alpha_err = np.abs(wrap_angle(sensors[..., 1] - np.pi))
        upright = 1.0 - (0.8 * alpha_err + 0.2 * np.abs(theta)) / np.pi
        # Near upright, also ask for stillness, so balancing is preferred to spinning through.
        still = np.where(alpha_err < 0.5, 0.02 * np.abs(sensors[..., 3]), 0.0)
        effort = 0.02 * np.sum(np.square(action), axis=-1)
        out_of_travel = self.terminated(spec, sensors)
        return upright - still - effort - 50.0 * out_of_travel

    def success(self, spec: RobotSpec, sensors: np.ndarray, goal: np.ndarray) -> np.ndarray:
        hold = max(1, int(round(HOLD_S * spec.control_hz)))
        alpha_err = np.abs(wrap_angle(sensors[..., -hold:, 1] - np.pi))
        upright = np.all(alpha_err < UPRIGHT_TOL, axis=-1)
        in_travel = ~np.any(spec.out_of_envelope(sensors), axis=-1)
        long_enough = sensors.shape[-2] >= spec.episode_steps
        return upright & in_travel & long_enough

    def initial_state(
        self, spec: RobotSpec, model: mujoco.MjModel, rng: np.random.Generator, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        qpos = rng.uniform(-self.start_spread, self.start_spread, size=(n, model.nq))
        qvel = rng.uniform(-self.start_spread, self.start_spread, size=(n, model.nv))
        return qpos, qvel


@dataclass(frozen=True)
class Balance(SwingUp):
    """Start near upright and keep the pendulum there; success as for swing-up (upright for
    the final HOLD_S seconds, arm in travel, a full episode). Reward and observation are the
    swing-up's: upright and still pays, leaving the travel costs."""

    name: str = "balance"
    episode_s: float = 4.0
    start_tilt: float = 0.1
    """Initial pendulum angle: uniform within +-this (rad) of upright; arm and velocities
    within +-start_spread of rest."""

    def initial_state(
        self, spec: RobotSpec, model: mujoco.MjModel, rng: np.random.Generator, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        qpos, qvel = super().initial_state(spec, model, rng, n)
        qpos[:, 1] = np.pi + rng.uniform(-self.start_tilt, self.start_tilt, size=n)
        return qpos, qvel


TASKS = (SwingUp(), Balance())
DEFAULT_TASK = "swing_up"
