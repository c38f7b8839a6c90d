"""The one robot registry: robot name -> `RobotEntry` (layout, tasks, default task, folder).

A shipped robot is one folder here (`envs/robots/<name>/`) and one line in `_SHIPPED`.
Third-party robots join from the entry-point group `ppo_robot.robots` (each entry point
loads a `RobotEntry`) and from the modules named in `PPO_ROBOT_PLUGINS=mod[,mod...]`
(each calls `register(entry)` on import or exposes `ROBOT`), so a subprocess CLI sees a
robot that a test registered inside `tests/`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import yaml

from envs.robots.furuta import ROBOT as _FURUTA
from envs.robots.so101 import ROBOT as _SO101
from envs.spec import RobotEntry, RobotSpec, SpecError

ENTRY_POINT_GROUP = "ppo_robot.robots"
PLUGINS_ENV = "PPO_ROBOT_PLUGINS"

_SHIPPED: tuple[RobotEntry, ...] = (_FURUTA, _SO101)
ROBOTS: dict[str, RobotEntry] = {e.name: e for e in _SHIPPED}
_loaded_plugins = False


ON_REGISTER: list[Callable[[RobotEntry], None]] = []
"""Called with each robot registered from now on (envs.gym_env adds its Gymnasium
registration here, so this registry imports nothing above it)."""


def register(entry: RobotEntry) -> None:
    """Add (or replace) a robot; its Gymnasium ids are registered with it."""
    if not isinstance(entry, RobotEntry):
        raise SpecError(f"register() takes a RobotEntry, got {type(entry).__name__}")
    ROBOTS[entry.name] = entry
    for hook in ON_REGISTER:
        hook(entry)


def _load_plugins() -> None:
    """Robots from the entry-point group and from $PPO_ROBOT_PLUGINS (once per process)."""
    global _loaded_plugins
    if _loaded_plugins:
        return
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        register(ep.load())
    for mod_name in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            mod = importlib.import_module(mod_name)
        except ImportError as e:
            raise SpecError(
                f"{PLUGINS_ENV}: cannot import robot module '{mod_name}': {e}"
            ) from None
        if isinstance(getattr(mod, "ROBOT", None), RobotEntry):
            register(mod.ROBOT)
    _loaded_plugins = True  # only once all loaded: a bad plugin is reported again, by get_robot


def robots() -> dict[str, RobotEntry]:
    """Every registered robot, plugins included, by name."""
    _load_plugins()
    return ROBOTS


def get_entry(name: str) -> RobotEntry:
    known = robots()
    if name not in known:
        raise SpecError(f"unknown robot '{name}' (known: {sorted(known)})")
    return known[name]


def get_robot(name: str, control_hz: float | None = None, task: str | None = None) -> RobotSpec:
    """The spec of a registered robot with one of its tasks (default: the robot's default
    task), optionally at another control rate."""
    return get_entry(name).spec(control_hz, task)


def settings(name: str) -> dict[str, Any]:
    """The robot's own settings (its folder's robot.yaml: replay windows, config group ...);
    {} for an unknown robot or one without robot.yaml."""
    entry = robots().get(name)
    path = entry.folder / "robot.yaml" if entry is not None else None
    if path is None or not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: must be a mapping of settings")
    return data


TRANSPORTS = ("framed", "feetech")
"""How the host reaches a robot: `framed` = our COBS-framed protocol to a controller of ours
(firmware_bridge/wire/protocol.py), `feetech` = straight onto a Feetech STS servo bus."""


def transport(name: str) -> str:
    """The robot's transport (robot.yaml `transport`, default `framed`)."""
    t = settings(name).get("transport", "framed")
    if t not in TRANSPORTS:
        raise SpecError(f"robot '{name}': robot.yaml transport '{t}' is not one of {TRANSPORTS}")
    return str(t)
