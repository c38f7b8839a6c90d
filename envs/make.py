"""Build the vectorized env a config names: a shipped robot or a Gymnasium MuJoCo task."""

from __future__ import annotations

from typing import Any

from gymnasium.vector import VectorEnv

from envs.batched import BatchedEnv
from envs.randomization import Randomization
from envs.robots import get_robot
from envs.spec import RobotSpec
from envs.task import RobotTask


def robot_spec(env_cfg: Any) -> RobotSpec:
    return get_robot(env_cfg.robot, float(env_cfg.control_hz), getattr(env_cfg, "task", None))


def make_env(
    env_cfg: Any,
    num_envs: int,
    seed: int,
    randomization: Randomization | None = None,
) -> VectorEnv:
    """A BatchedEnv for robots (and Gymnasium tasks ported to the engine), else a fallback."""
    if env_cfg.kind == "robot":
        spec = robot_spec(env_cfg)
        task = RobotTask(spec, env_cfg.model_xml)
        return BatchedEnv(task, num_envs, seed, env_cfg.nthread, randomization)
    from envs.gym_tasks import make_gym_env

    if randomization is not None and not randomization.is_empty:
        raise ValueError(
            f"env={env_cfg.name}: randomization is defined for robot specs; use randomization=none"
        )
    return make_gym_env(env_cfg.name, num_envs, seed, env_cfg.nthread)
