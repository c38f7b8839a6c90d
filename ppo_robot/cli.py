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

from ppo_robot.paths import config_dir

CONFIG_DIR = str(config_dir())
"""The folder Hydra composes from (see ppo_robot.paths)."""
EXIT_BAD_INPUT = 2
EXIT_FAULT = 3


class UserError(Exception):
    """Bad input: reported as one line, exit code 2."""


class RunFault(Exception):
    """A run that started and ended by fault (deploy): one line, exit code 3."""


def one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " ".join(lines[:2]) if lines else type(e).__name__


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


def run_app(config_name: str, task: Callable[[Any], dict[str, Any] | None]) -> None:
    """Run `task(cfg)` as a Hydra app, with composition errors as one line and exit 2.

    The config is composed once up front to catch bad input before Hydra's own runner
    (which would print a multi-line report and exit 1); then hydra.main runs as usual,
    so `-m` sweeps, `--cfg job` and the other Hydra flags work.
    """
    import hydra
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from ppo_robot.config import register_configs

    register_configs()
    argv = sys.argv[1:]
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
        except RunFault as e:
            fail(one_line(e), EXIT_FAULT)
        except KeyboardInterrupt:
            fail("interrupted", 130)

    _main()
