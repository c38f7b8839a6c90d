"""Where the configs are, and how a config file a user names by path is found there.

The repository keeps `configs/` at the top level; a wheel carries the same folder as
package data at `ppo_robot/configs/` (copied in by `setup.py`). `config_dir()` is the one
answer to "where are the configs": the packaged copy when installed, the checkout's
otherwise. Standard library only, so that every floor (the envs reading reality files, the
entry points composing with Hydra) may ask it.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent
_PACKAGED = _HERE / "configs"
_CHECKOUT = _HERE.parent / "configs"


def config_dir() -> Path:
    """The config folder: `ppo_robot/configs/` in an installed wheel, else the checkout's."""
    return _PACKAGED if _PACKAGED.is_dir() else _CHECKOUT


def robot_option(group: str, name: str, robot: str | None = None) -> str:
    """A bare option of a per-robot config group -> the option as it lies in the folder:
    the robot's where it has one (`default` -> `furuta/default`, `prbs` -> `so101/prbs`),
    else a shared file as is (`none`, furuta's `prbs`). Without `robot`, a shared file, else
    the one robot folder of `group` that has it. The one place this mapping is made (Hydra
    groups: `ppo_robot.cli`; reality files: `find_config_file`); `name` itself where nothing
    matches (the caller reports it)."""
    base = config_dir() / group
    stem = name[:-5] if name.endswith(".yaml") else name
    if "/" in stem or not base.is_dir():
        return name
    if robot and (base / robot / f"{stem}.yaml").is_file():
        return f"{robot}/{stem}"
    if (base / f"{stem}.yaml").is_file():
        return name
    folders = [robot] if robot else sorted(d.name for d in base.iterdir() if d.is_dir())
    hits = [f"{r}/{stem}" for r in folders if (base / r / f"{stem}.yaml").is_file()]
    return hits[0] if len(hits) == 1 else name


def find_config_file(path: str | Path, group: str, robot: str | None = None) -> Path | None:
    """The file a user named: `path` itself where it exists; else in the config folder a
    leading `configs/` read as the config folder (`configs/realities/x.yaml`), and a bare
    name, with or without `.yaml`, read as a file of `group` (`x` -> `<group>/x.yaml`, or
    the robot's `<group>/<robot>/x.yaml`, see `robot_option`). None where it is in
    neither place."""
    p = Path(path)
    if p.is_file():
        return p
    if p.parts[:1] == ("configs",):
        rest = p.parts[1:]
        candidates = [config_dir().joinpath(*rest)]
        # configs/realities/x.yaml, from before the robot folders: the robot's x.yaml
        if len(rest) == 2 and rest[0] == group:
            candidates.append(config_dir() / group / f"{robot_option(group, rest[1], robot)}.yaml")
    elif len(p.parts) == 1:
        opt = robot_option(group, p.name, robot)
        candidates = [config_dir() / group / opt, config_dir() / group / f"{opt}.yaml"]
    else:
        candidates = []
    return next((c for c in candidates if c.is_file()), None)
