"""What every entry point shares: Hydra composition with one-line errors, exit codes, the
closing JSON summary line.

Bad input (a malformed override, an unknown key, a wrong type, a missing file) ends the
program with one line on stderr naming the offending thing and exit code 2, never a raw
traceback. A run ends with one JSON line on stdout, also saved in its output folder.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ppo_robot.errors import EXIT_BAD_INPUT, EXIT_FAULT, RunFault, UserError, one_line
from ppo_robot.paths import config_dir

__all__ = [
    "CONFIG_DIR",
    "EXIT_BAD_INPUT",
    "EXIT_FAULT",
    "RunFault",
    "UserError",
    "one_line",
    "fail",
    "write_summary",
    "atomic_write_text",
    "register_schema",
    "typed_config",
    "run_app",
]

CONFIG_DIR = str(config_dir())
"""The folder Hydra composes from (see ppo_robot.paths)."""


def fail(msg: str, code: int = EXIT_BAD_INPUT) -> None:
    sys.stdout.flush()
    print(f"error: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


def write_summary(
    summary: dict[str, Any], out_dir: str | Path | None, name: str = "summary.json"
) -> None:
    """Print the one-line JSON summary (last line on stdout) and save it in out_dir."""
    line = json.dumps(summary, default=_jsonable)
    if out_dir is not None:
        p = Path(out_dir)
        p.mkdir(parents=True, exist_ok=True)
        atomic_write_text(p / name, line + "\n")
    sys.stderr.flush()
    print(line, flush=True)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _jsonable(x: Any) -> Any:
    try:
        import numpy as np

        if isinstance(x, np.generic):
            return x.item()
        if isinstance(x, np.ndarray):
            return x.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(x)


_FLAGS_WITH_VALUE = {
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
}


def _validation_args(argv: list[str]) -> list[str]:
    """Overrides for a trial composition: flags dropped, sweeps reduced to their first value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a.startswith("-"):
            # Hydra's flags that take a value as the next word
            skip = a in _FLAGS_WITH_VALUE and "=" not in a
        else:
            args.append(a)
    if not args:
        return []
    parser = OverridesParser.create()
    parsed = []
    for a in args:  # one at a time, so that an unparseable override is named
        try:
            parsed.extend(parser.parse_overrides([a]))
        except Exception as e:  # hydra's OverrideParseException and kin
            raise ValueError(f"cannot parse override '{a}': {one_line(e)}") from None
    out = []
    for o, raw in zip(parsed, args, strict=True):
        if o.is_sweep_override():
            first = next(iter(o.sweep_string_iterator()))
            out.append(f"{o.get_key_element()}={first}")
        else:
            out.append(raw)
    return out


_SCHEMAS: dict[str, type] = {}
"""Entry point config name -> its structured-config dataclass (see register_schema)."""


def register_schema(config_name: str, schema: type, groups: dict[str, type] | None = None) -> None:
    """Store an entry point's schema with Hydra's ConfigStore as `<config_name>_schema`, the
    name the first entry of configs/<config_name>.yaml's defaults list uses; `groups`
    (group -> dataclass) as `<group>_schema` in their config groups (train's env, ppo).

    Each entry point owns its schema (the dataclass lives beside its code) and passes it to
    `run_app`; tests that compose a config by hand call this first."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name=f"{config_name}_schema", node=_overridable(schema))
    for group, node in (groups or {}).items():
        cs.store(group=group, name=f"{group}_schema", node=_overridable(node))
    _SCHEMAS[config_name] = schema


def _overridable(schema: type) -> Any:
    """The structured config of `schema` with no read-only section: a frozen dataclass used as
    a section (deploy's `safety` is the safety layer's frozen SafetyConfig) is still set by
    the YAML and by overrides; `typed_config` still builds the frozen object."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    node = OmegaConf.structured(schema)
    todo = [node]
    while todo:
        n = todo.pop()
        n._set_flag("readonly", None)
        if isinstance(n, DictConfig) and not n._is_missing() and not n._is_none():
            todo.extend(n._get_node(k) for k in n)
        elif isinstance(n, ListConfig) and not n._is_missing() and not n._is_none():
            todo.extend(n._get_node(i) for i in range(len(n)))
    return node


def typed_config(cfg: Any, schema: type) -> Any:
    """A composed DictConfig -> the typed `schema` object, range-checked by its `validate()`
    (where it has one), which raises UserError naming the key. The one conversion every
    entry point uses."""
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue

    try:
        typed = OmegaConf.to_object(cfg)
    except MissingMandatoryValue as e:
        raise UserError(_missing(e)) from None
    if not isinstance(typed, schema):
        raise TypeError(f"config is {type(typed).__name__}, not {schema.__name__}")
    check = getattr(typed, "validate", None)
    if check is not None:
        check()
    return typed


def _missing(e: Exception) -> str:
    """A mandatory (`???`) key left unset, as one line naming it."""
    key = getattr(e, "full_key", None) or "config"
    return f"{key}: missing value (give {key}=...)"


def robot_group_args(argv: list[str], config_name: str | None = None) -> list[str]:
    """`randomization=default` -> `randomization=furuta/default`: a bare option of a
    per-robot group read as the robot's (`env.robot=`, else the `env=` file's robot, else
    `robot=`, else the robot of `checkpoint=`'s run (its config.yaml), else the one robot
    that has it). `excitation=prbs robot=so101` likewise, and
    without `excitation=` the config's default excitation (`config_name`'s defaults list) is
    the robot's file of that name where it has one (so101's `chirp`, furuta's shared one)."""
    import yaml

    from ppo_robot.paths import config_dir, robot_option

    keys = ("env=", "env.robot=", "robot=", "checkpoint=")
    given = dict(a.split("=", 1) for a in argv if a.startswith(keys))
    robot = given.get("env.robot")
    env_file = config_dir() / "env" / f"{given.get('env', '')}.yaml"
    if robot is None and "env" in given and env_file.is_file():
        robot = ((yaml.safe_load(env_file.read_text()) or {}).get("env") or {}).get("robot")
    robot = robot or given.get("robot") or _checkpoint_robot(given.get("checkpoint"))
    out = []
    for a in argv:
        key, eq, val = a.partition("=")
        group = key.lstrip("+~")
        if eq and group in ("randomization", "excitation") and "(" not in val:  # a, or a,b (-m)
            a = f"{key}={','.join(robot_option(group, v, robot) for v in val.split(','))}"
        out.append(a)
    default = _default_option(config_name, "excitation")
    if robot and default and not any(a.startswith("excitation=") for a in argv):
        own = robot_option("excitation", default, robot)
        if own != default:
            out.append(f"excitation={own}")
    return out


def _checkpoint_robot(path: str | None) -> str | None:
    """The robot of the run a checkpoint was saved in (RUN/checkpoints/X.pt beside
    RUN/config.yaml); None where that is not known."""
    import yaml

    cfg = Path(path).resolve().parent.parent / "config.yaml" if path else None
    if cfg is None or not cfg.is_file():
        return None
    try:
        return ((yaml.safe_load(cfg.read_text()) or {}).get("env") or {}).get("robot")
    except yaml.YAMLError:
        return None


def _default_option(config_name: str | None, group: str) -> str | None:
    """The option of `group` in config `config_name`'s defaults list (None: none)."""
    import yaml

    from ppo_robot.paths import config_dir

    path = config_dir() / f"{config_name}.yaml"
    if not config_name or not path.is_file():
        return None
    for entry in (yaml.safe_load(path.read_text()) or {}).get("defaults") or []:
        if isinstance(entry, dict) and isinstance(entry.get(group), str):
            return entry[group]
    return None


def run_app(
    config_name: str,
    task: Callable[[Any], dict[str, Any] | None],
    schema: type | None = None,
    groups: dict[str, type] | None = None,
) -> None:
    """Run `task(cfg)` as a Hydra app, with composition errors as one line and exit 2.

    `schema` (with `groups`) is registered first (`register_schema`); None: the one an
    earlier `register_schema(config_name, ...)` stored. The config is composed once up
    front to catch bad input before Hydra's own runner (which would print a multi-line
    report and exit 1); then hydra.main runs as usual, so `-m` sweeps, `--cfg job` and
    the other Hydra flags work. `task` receives the composed DictConfig and turns it into
    its typed object with `typed_config` (mandatory `???` keys are left for the task to
    name in its own words).
    """
    import hydra
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf.errors import MissingMandatoryValue

    if schema is not None:
        register_schema(config_name, schema, groups)
    if config_name not in _SCHEMAS:
        raise RuntimeError(f"no schema registered for config '{config_name}'")
    argv = sys.argv[1:] = robot_group_args(sys.argv[1:], config_name)
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            compose(config_name=config_name, overrides=_validation_args(argv))
    except Exception as e:  # hydra/omegaconf raise many types; all are bad input here
        fail(f"config: {one_line(e)}")
    finally:
        GlobalHydra.instance().clear()

    @hydra.main(config_path=CONFIG_DIR, config_name=config_name, version_base="1.3")
    def _main(cfg: Any) -> None:
        try:
            task(cfg)
        except UserError as e:
            fail(one_line(e))
        except MissingMandatoryValue as e:
            fail(_missing(e))
        except RunFault as e:
            fail(one_line(e), EXIT_FAULT)
        except KeyboardInterrupt:
            fail("interrupted", 130)

    _main()
