"""A test-only robot folder: a one-joint position-servo pendulum with a gyro.

Registered the way a third-party robot is: this package exposes `ROBOT` (a `RobotEntry`)
and `PPO_ROBOT_PLUGINS=tests.servo_robot` loads it in a subprocess CLI; the test process
registers it in tests/conftest.py (`TEST_ROBOTS`). Nothing outside this folder and that
line knows about it, and the conformance suite (tests/test_conformance.py) runs it through
every stage like a shipped robot.

Exercises what the furuta does not: a vector sensor split into layout entries (gyro x/y/z
from one MuJoCo gyro, each with its own limits), a quantized joint angle, and a
`kind="position"` actuator with kp/kd matching its MJCF (servo.xml), a `center`/`half_range`
mapping and a 'hold' safe state. The task: hold the angle TARGET.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import mujoco
import numpy as np

from envs.spec import Actuator, Objective, RobotEntry, RobotSpec, Sensor

FOLDER = Path(__file__).parent
KP, KD = 5.0, 0.2
"""The servo gains, as in servo.xml's <position kp kv>."""
TARGET = 0.5
"""Angle (rad) the task holds."""
ENCODER_COUNTS = 4096
NAME = "servo_test"


@dataclass(frozen=True)
class ServoSpec(RobotSpec):
    """The servo's layout (a RobotSpec subclass, so a test can override its hooks)."""


@dataclass(frozen=True)
class Hold(Objective):
    """Hold the servo at TARGET; success: within 0.05 rad at the episode's end."""

    name: str = "hold"
    obs_names: tuple[str, ...] = ("angle", "velocity", "gyro_x", "gyro_y", "gyro_z")
    episode_s: float = 2.0

    def observe(self, spec, sensors: np.ndarray, inputs) -> np.ndarray:
        return np.asarray(sensors, dtype=np.float32)

    def reward(self, spec, sensors, command, action, inputs) -> np.ndarray:
        return -np.square(sensors[..., 0] - TARGET)

    def success(self, spec, sensors: np.ndarray, goal) -> np.ndarray:
        return np.abs(sensors[:, -1, 0] - TARGET) < 0.05

    def initial_state(self, spec, model: mujoco.MjModel, rng: np.random.Generator, n: int):
        return rng.uniform(-0.1, 0.1, (n, model.nq)), np.zeros((n, model.nv))


HOLD = Hold()


def layout(control_hz: float = 50.0, safe_mode: str = "hold") -> ServoSpec:
    gyro = [
        Sensor(f"gyro_{ax}", "rad/s", -lim, lim, source="gyro", component=i)
        for i, (ax, lim) in enumerate((("x", 30.0), ("y", 40.0), ("z", 50.0)))
    ]
    servo = Actuator(
        "servo", "rad", -1.5, 1.5, kind="position", safe=0.0, center=0.0, half_range=1.0,
        kp=KP, kd=KD, safe_mode=safe_mode, position_sensor="angle",
    )  # fmt: skip
    return ServoSpec(
        name=NAME,
        version=1,
        xml="servo.xml",
        sensors=(
            Sensor("angle", "rad", -1.6, 1.6, resolution=2 * np.pi / ENCODER_COUNTS),
            Sensor("velocity", "rad/s", -40.0, 40.0),
            *gyro,
        ),
        actuators=(servo,),
        control_hz=control_hz,
    )


ROBOT = RobotEntry(layout=layout(), tasks=(HOLD,), default_task="hold", folder=FOLDER)


def servo_robot(control_hz: float = 50.0, safe_mode: str = "hold") -> ServoSpec:
    """The servo robot with its task, as `get_robot` gives it (tests vary its safe mode)."""
    entry = replace(ROBOT, layout=layout(control_hz, safe_mode))
    return entry.spec()
