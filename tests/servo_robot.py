"""A test-only robot: a one-joint position-servo pendulum with a gyro.

Exercises what the furuta does not: a vector sensor split into layout entries (gyro x/y/z
from one MuJoCo gyro, each with its own limits), a quantized joint angle, and a
`kind="position"` actuator with kp/kd matching its MJCF and a 'hold' safe state. The task
is trivial: hold the angle TARGET. MJCF: tests/servo_robot.xml.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from envs.spec import Actuator, RobotSpec, Sensor

XML = Path(__file__).with_name("servo_robot.xml")
KP, KD = 5.0, 0.2
"""The servo gains, as in servo_robot.xml's <position kp kv>."""
TARGET = 0.5
"""Angle (rad) the task holds."""
ENCODER_COUNTS = 4096
NAME = "servo_test"


@dataclass(frozen=True)
class ServoSpec(RobotSpec):
    def observe(self, sensors: np.ndarray) -> np.ndarray:
        return np.asarray(sensors, dtype=np.float32)

    def reward(self, sensors: np.ndarray, command: np.ndarray, action: np.ndarray) -> np.ndarray:
        return -np.square(sensors[..., 0] - TARGET)

    def success(self, sensors: np.ndarray) -> np.ndarray:
        return np.abs(sensors[:, -1, 0] - TARGET) < 0.05

    def initial_state(
        self, model: mujoco.MjModel, rng: np.random.Generator, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        return rng.uniform(-0.1, 0.1, (n, model.nq)), np.zeros((n, model.nv))


def servo_robot(control_hz: float = 50.0, safe_mode: str = "hold") -> ServoSpec:
    gyro = [
        Sensor(f"gyro_{ax}", "rad/s", -lim, lim, source="gyro", component=i)
        for i, (ax, lim) in enumerate((("x", 30.0), ("y", 40.0), ("z", 50.0)))
    ]
    return ServoSpec(
        name=NAME,
        version=1,
        xml=str(XML),
        sensors=(
            Sensor("angle", "rad", -1.6, 1.6, resolution=2 * np.pi / ENCODER_COUNTS),
            Sensor("velocity", "rad/s", -40.0, 40.0),
            *gyro,
        ),
        actuators=(
            Actuator(
                "servo",
                "rad",
                -1.5,
                1.5,
                kind="position",
                safe=0.0,
                center=0.0,
                half_range=1.0,
                kp=KP,
                kd=KD,
                safe_mode=safe_mode,
                position_sensor="angle",
            ),
        ),
        control_hz=control_hz,
        episode_s=2.0,
        obs_names=("angle", "velocity", "gyro_x", "gyro_y", "gyro_z"),
    )


# ------------------------------------------------------------------ registration
def register_servo_robot() -> None:
    """THE ONE PLACE the servo robot is registered (the lead adapts it to helper A's
    `envs.robots.register(entry)` / PPO_ROBOT_PLUGINS). Today: a line in ROBOTS."""
    from envs.robots import ROBOTS

    ROBOTS[NAME] = servo_robot
