"""The command line of `firmware_bridge.replay`, checked before any output: the logs
(read), the parameters to fit, the robot's replay windows, the files given by path, and
the report folder (created). Bad input is refused with one line (UserError, exit 2);
files that the log names but that are gone are not input: the sections report them.

mujoco is imported here first (`import_mujoco`), after the headless GL backend is chosen,
so nothing else of the replay imports it at module level.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from firmware_bridge.analysis.replay_config import ReplayConfig
from ppo_robot.cli import UserError, one_line


def import_mujoco(cfg: ReplayConfig) -> None:
    """Import mujoco first here, headless rendering chosen where render=true has no display."""
    if cfg.render and "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"  # headless rendering; read when mujoco is imported
    try:
        import mujoco  # noqa: F401  (the first import: it reads MUJOCO_GL, here)
    except Exception as e:  # an invalid MUJOCO_GL, a broken GL library
        raise UserError(f"mujoco cannot be imported: {one_line(e)}") from None


def read_inputs(
    cfg: ReplayConfig,
) -> tuple[ReplayConfig, list[Path], list[str], list[Any], Path]:
    """The config with the log's robot's replay windows filled in, the logs (read), the
    parameters to fit and the report folder (created); bad input refused with one line.
    `cfg` is validated already (typed_config)."""
    from firmware_bridge.logs.rollout_log import LogError, read_log

    paths = cfg.log_paths()
    fit_names = [str(x) for x in cfg.fit]
    datas = []
    for p in paths:
        try:
            datas.append(read_log(p))
        except LogError as e:
            raise UserError(str(e)) from None
        except OSError as e:
            raise UserError(f"log {p} cannot be read ({e.strerror})") from None
    data = datas[0]
    cfg = _robot_windows(cfg, data.run)
    _check_given_files(cfg, data.run)
    out = Path(cfg.out_dir) if cfg.out_dir else paths[0].with_name(paths[0].stem + "-replay")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"out_dir {out} cannot be created ({e.strerror})") from None
    return cfg, paths, fit_names, datas, out


def _robot_windows(cfg: ReplayConfig, run: dict[str, Any]) -> ReplayConfig:
    """rmse_horizon_s / window_s left null: the log's robot's (its robot.yaml); all > 0.
    A log of no registered robot keeps them null: it has no simulation to replay. The fit's
    difference steps left null: the robot's, else the fit's defaults."""
    from envs.robots import robots, settings
    from envs.spec import SpecError

    robot = str(run.get("robot") or "")
    try:
        own = settings(robot) if robot in robots() else None
    except SpecError as e:
        raise UserError(str(e)) from None
    filled = {}
    for k in ("rmse_horizon_s", "window_s"):
        if getattr(cfg, k) is None and own is not None:
            if own.get(k) is None:
                raise UserError(
                    f"{k} is null and robot '{run.get('robot')}' sets none (robot.yaml); give {k}="
                )
            filled[k] = float(own[k])
    from firmware_bridge.analysis.sysid import FIT_STEP, LATENCY_STEP_S

    for k, default in (
        ("fit_step", FIT_STEP),
        ("fit_latency_step_s", LATENCY_STEP_S),
        ("fit_robust_scale", None),
    ):
        if getattr(cfg, k) is None and (own or {}).get(k, default) is not None:
            filled[k] = float((own or {}).get(k, default))
    cfg = replace(cfg, **filled)
    cfg.validate()  # the robot's windows and fit steps are > 0 too
    return cfg


def _check_given_files(cfg: ReplayConfig, run: dict[str, Any]) -> None:
    """Files given on the command line must exist and load (else one line, exit 2, before
    any output); files the log names but that are gone are reported in `missing` instead."""
    from envs.robots import get_robot
    from envs.spec import SpecError
    from export.runtime import OnnxPolicy, PolicyError
    from ppo_robot.checkpoint import load_checkpoint

    robot = run.get("robot")
    if cfg.model_xml:
        try:
            if robot:
                get_robot(str(robot)).load_model(cfg.model_xml)
            elif not Path(cfg.model_xml).is_file():
                raise SpecError(f"MJCF file not found: {cfg.model_xml}")
        except SpecError as e:
            raise UserError(f"model_xml: {e}") from None
    if cfg.checkpoint:
        load_checkpoint(cfg.checkpoint)  # UserError naming the file
    if cfg.policy:
        try:
            pol = OnnxPolicy(cfg.policy)
        except PolicyError as e:
            raise UserError(str(e)) from None
        if robot and pol.info.robot != robot:
            raise UserError(
                f"policy: {cfg.policy} is for robot '{pol.info.robot}', the log for '{robot}'"
            )
