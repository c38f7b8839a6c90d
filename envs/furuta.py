"""The default robot: a rotary inverted (Furuta) pendulum modelled on the QUBE-Servo 2.

Task: swing the pendulum up from rest hanging down and balance it upright, with the arm
inside its travel. The model's numbers and their sources are in `assets/furuta.xml`.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from envs.spec import Actuator, RobotSpec, Sensor, wrap_angle

ENCODER_COUNTS = 2048
"""QUBE-Servo 2 encoders: 2048 counts per revolution in quadrature."""
ARM_TRAVEL = 2.0
"""Arm travel (rad) either side of its start: the arm_angle sensor's safe envelope, so the
one limit that training terminates on, the host faults on and the firmware raises LIMIT on
(boards/furuta/robot_spec.h is generated from it). The QUBE's cable allows about +-2.3;
the 0.3 rad left is the room to stop in."""
UPRIGHT_TOL = 0.2
"""Success: pendulum within this angle (rad) of upright ..."""
HOLD_S = 2.0
"""... for every control step of the final HOLD_S seconds."""


@dataclass(frozen=True)
class FurutaSpec(RobotSpec):
    """Sensors: arm and pendulum encoder angles and the velocities the controller estimates.

    Pendulum angle is 0 hanging down and +-pi upright (an encoder zeroed at rest).
    Actuator: motor voltage, +-10 V.
    """

    def observe(self, sensors: np.ndarray) -> np.ndarray:
        theta = sensors[..., 0]
        alpha = sensors[..., 1]
        obs = np.stack(
            [theta, np.cos(alpha), np.sin(alpha), sensors[..., 2], sensors[..., 3]], axis=-1
        )
        return obs.astype(np.float32)

    def reward(self, sensors: np.ndarray, command: np.ndarray, action: np.ndarray) -> np.ndarray:
        theta = sensors[..., 0]
        alpha_err = np.abs(wrap_angle(sensors[..., 1] - np.pi))
        upright = 1.0 - (0.8 * alpha_err + 0.2 * np.abs(theta)) / np.pi
        # Near upright, also ask for stillness, so balancing is preferred to spinning through.
        still = np.where(alpha_err < 0.5, 0.02 * np.abs(sensors[..., 3]), 0.0)
        effort = 0.02 * np.sum(np.square(action), axis=-1)
        out_of_travel = self.terminated(sensors)
        return upright - still - effort - 50.0 * out_of_travel

    def success(self, sensors: np.ndarray) -> np.ndarray:
        hold = max(1, int(round(HOLD_S * self.control_hz)))
        alpha_err = np.abs(wrap_angle(sensors[..., -hold:, 1] - np.pi))
        upright = np.all(alpha_err < UPRIGHT_TOL, axis=-1)
        in_travel = ~np.any(self.out_of_envelope(sensors), axis=-1)
        long_enough = sensors.shape[-2] >= self.episode_steps
        return upright & in_travel & long_enough

    def initial_state(
        self, model: mujoco.MjModel, rng: np.random.Generator, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        qpos = rng.uniform(-0.05, 0.05, size=(n, model.nq))
        qvel = rng.uniform(-0.05, 0.05, size=(n, model.nv))
        return qpos, qvel


_ENC = 2 * np.pi / ENCODER_COUNTS


def furuta(control_hz: float = 100.0) -> FurutaSpec:
    return FurutaSpec(
        name="furuta",
        version=1,
        xml="furuta.xml",
        sensors=(
            Sensor("arm_angle", "rad", -ARM_TRAVEL, ARM_TRAVEL, resolution=_ENC),
            Sensor("pend_angle", "rad", -1e6, 1e6, resolution=_ENC),
            Sensor("arm_velocity", "rad/s", -100.0, 100.0),
            Sensor("pend_velocity", "rad/s", -200.0, 200.0),
        ),
        actuators=(Actuator("motor", "V", -10.0, 10.0, kind="effort", safe=0.0),),
        control_hz=control_hz,
        episode_s=5.0,
        obs_names=("arm_angle", "cos_pend", "sin_pend", "arm_velocity", "pend_velocity"),
    )
