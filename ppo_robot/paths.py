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


def find_config_file(path: str | Path, group: str) -> Path | None:
    """The file a user named: `path` itself where it exists; else in the config folder a
    leading `configs/` read as the config folder (`configs/realities/x.yaml`), and a bare
    name, with or without `.yaml`, read as a file of `group` (`x` -> `<group>/x.yaml`).
    None where it is in neither place."""
    p = Path(path)
    if p.is_file():
        return p
    if p.parts[:1] == ("configs",):
        candidates = [config_dir().joinpath(*p.parts[1:])]
    elif len(p.parts) == 1:
        candidates = [config_dir() / group / p.name, config_dir() / group / f"{p.name}.yaml"]
    else:
        candidates = []
    return next((c for c in candidates if c.is_file()), None)
