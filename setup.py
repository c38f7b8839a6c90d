"""Build step: the wheel carries the top-level `configs/` as package data at
`ppo_robot/configs/` (ppo_robot.paths.config_dir finds it there). Everything else about the
package is in pyproject.toml.

An editable install copies nothing: it reads the checkout's `configs/` in place.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONFIGS = Path(__file__).resolve().parent / "configs"


class BuildPyWithConfigs(build_py):
    """`build_py`, plus `configs/**/*.yaml` copied into the build as `ppo_robot/configs/`."""

    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            target = Path(self.build_lib) / "ppo_robot" / "configs"
            shutil.rmtree(target, ignore_errors=True)  # no stale file from an earlier build
            shutil.copytree(CONFIGS, target, ignore=_not_yaml)


def _not_yaml(folder: str, names: list[str]) -> list[str]:
    """shutil.copytree's ignore: everything but YAML files and folders."""
    return [n for n in names if not n.endswith(".yaml") and not (Path(folder) / n).is_dir()]


setup(cmdclass={"build_py": BuildPyWithConfigs})
