"""Gymnasium registration: a robot spec as a single `gymnasium.Env`.

`gymnasium.make("ppo_robot/FurutaSwingUp-v0")` gives the default robot, stepped by the same
batched engine (with one env) that training uses, so there is one code path.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from envs.batched import BatchedEnv
from envs.randomization import Randomization
from envs.spec import RobotSpec
from envs.task import RobotTask


class RobotEnv(gym.Env):
    """One env of a robot spec. Episodes end on termination or at the spec's length."""

    metadata = {"render_modes": []}

    def __init__(
        self,
        spec: RobotSpec | None = None,
        randomization: Randomization | None = None,
        control_hz: float | None = None,
    ) -> None:
        if spec is None:
            from envs.furuta import furuta

            spec = furuta()
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


def register() -> None:
    """Register the shipped robots with Gymnasium (idempotent)."""
    if "ppo_robot/FurutaSwingUp-v0" not in gym.registry:
        gym.register(id="ppo_robot/FurutaSwingUp-v0", entry_point="envs.gym_env:RobotEnv")
