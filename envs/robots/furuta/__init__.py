"""The Furuta pendulum (QUBE-Servo 2): layout, tasks, MJCF, README.md and robot.yaml here."""

from __future__ import annotations

from pathlib import Path

from envs.robots.furuta.layout import ARM_TRAVEL, CONTROL_HZ, ENCODER_COUNTS, layout
from envs.robots.furuta.tasks import DEFAULT_TASK, HOLD_S, TASKS, UPRIGHT_TOL
from envs.spec import RobotEntry

ROBOT = RobotEntry(
    layout=layout(CONTROL_HZ), tasks=TASKS, default_task=DEFAULT_TASK, folder=Path(__file__).parent
)

__all__ = ["ARM_TRAVEL", "ENCODER_COUNTS", "HOLD_S", "ROBOT", "UPRIGHT_TOL"]
