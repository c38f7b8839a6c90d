"""Gymnasium registration: a robot spec as a single `gymnasium.Env`.

Every registered robot and task gets an id, `ppo_robot/<Robot><Task>-v0` (`gym_id`):
`gymnasium.make("ppo_robot/FurutaSwingUp-v0")` gives the default robot and task,
`ppo_robot/FurutaBalance-v0` its balance task. Each is stepped by the same batched engine
(with one env) that training uses, so there is one code path.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from envs.batched import BatchedEnv
from envs.randomization import Randomization
from envs.spec import RobotEntry, RobotSpec, SpecError
from envs.task import RobotTask


class RobotEnv(gym.Env):
    """One env of a robot spec. Episodes end on termination or at the spec's length."""

    metadata = {"render_modes": []}

    def __init__(
        self,
        spec: RobotSpec | None = None,
        randomization: Randomization | None = None,
        control_hz: float | None = None,
        robot: str = "furuta",
        task: str | None = None,
    ) -> None:
        if spec is None:
            from envs.robots import get_robot

            spec = get_robot(robot, task=task)
        if control_hz is not None:
            spec = spec.with_rate(control_hz)
        self.spec_ = spec
        self._env = BatchedEnv(RobotTask(spec), 1, seed=0, nthread=1, randomization=randomization)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (spec.obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (spec.act_dim,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is None and not hasattr(self, "_seeded"):
            seed = int(self.np_random.integers(2**31))
        self._seeded = True
        obs, _ = self._env.reset(seed=seed)
        return obs[0].astype(np.float32), {}

    def step(self, action):
        obs, rew, term, trunc, info = self._env.step(np.asarray(action, dtype=np.float64)[None])
        out_obs = info["final_obs"][0] if term[0] or trunc[0] else obs[0]
        step_info = {}
        if "episode" in info and "success" in info["episode"]:
            step_info["success"] = bool(info["episode"]["success"][0])
        return out_obs.astype(np.float32), float(rew[0]), bool(term[0]), bool(trunc[0]), step_info

    def close(self) -> None:
        self._env.close()


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def gym_id(robot: str, task: str) -> str:
    """The Gymnasium id of a robot's task: furuta, swing_up -> ppo_robot/FurutaSwingUp-v0."""
    return f"ppo_robot/{_camel(robot)}{_camel(task)}-v0"


def register_robot(entry: RobotEntry) -> None:
    """Register every task of one robot with Gymnasium (idempotent)."""
    for task in entry.task_names:
        env_id = gym_id(entry.name, task)
        if env_id not in gym.registry:
            kwargs = {"robot": entry.name, "task": task}
            gym.register(id=env_id, entry_point="envs.gym_env:RobotEnv", kwargs=kwargs)


def register() -> None:
    """Register the robots of the registry with Gymnasium (idempotent). A plugin that fails
    to load is left out here; `get_robot` reports it as a one-line SpecError."""
    from envs import robots

    if register_robot not in robots.ON_REGISTER:
        robots.ON_REGISTER.append(register_robot)  # robots registered later get ids too
    try:
        entries = robots.robots()
    except SpecError:
        entries = robots.ROBOTS
    for entry in list(entries.values()):
        register_robot(entry)
