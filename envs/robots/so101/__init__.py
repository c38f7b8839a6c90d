"""The SO-101 arm (TheRobotStudio, six STS3215 servos on a Feetech bus): layout.py,
tasks.py, so101.xml, README.md and robot.yaml here."""

from __future__ import annotations

from pathlib import Path

from envs.robots.so101.layout import CONTROL_HZ, JOINTS, SERVO_IDS
from envs.robots.so101.layout import layout as _layout  # the package's `layout` stays the module
from envs.robots.so101.tasks import DEFAULT_TASK, TASKS
from envs.spec import RobotEntry

ROBOT = RobotEntry(
    layout=_layout(CONTROL_HZ), tasks=TASKS, default_task=DEFAULT_TASK, folder=Path(__file__).parent
)

__all__ = ["JOINTS", "ROBOT", "SERVO_IDS"]
