"""A third-party robot for the tests: `PPO_ROBOT_PLUGINS=tests.plugin_robot` registers it.

The Furuta pendulum under another name (its MJCF, layout and tasks), registered the way a
plugin does it: `envs.robots.register(entry)` on import.
"""

from __future__ import annotations

from dataclasses import replace

from envs.robots import register
from envs.robots.furuta import ROBOT as FURUTA
from envs.spec import RobotEntry

ROBOT = RobotEntry(
    layout=replace(FURUTA.layout, name="furuta_twin"),
    tasks=FURUTA.tasks,
    default_task=FURUTA.default_task,
    folder=FURUTA.folder,
)
register(ROBOT)
