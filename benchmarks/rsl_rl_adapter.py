"""Our batched engine behind RSL-RL's `VecEnv` interface (rsl_rl.env.VecEnv, rsl-rl-lib 5.x).

A thin adapter, no new behaviour: actions go to `BatchedEnv.step` as numpy, observations come
back as the one observation group `policy` of a TensorDict, `dones` is termination or
truncation and `extras["time_outs"]` the truncations (RSL-RL bootstraps those). The engine
resets finished envs itself (same-step autoreset), as RSL-RL expects of a VecEnv.
"""

from __future__ import annotations

import numpy as np
import torch
from rsl_rl.env import VecEnv
from tensordict import TensorDict


class RslRlEnv(VecEnv):
    def __init__(self, env, seed: int) -> None:
        self.env = env
        self.num_envs = env.num_envs
        self.num_actions = int(env.single_action_space.shape[0])
        self.max_episode_length = int(env.task.max_episode_steps)
        self.device = "cpu"
        self.cfg = {}
        obs, _ = env.reset(seed=seed)
        self._obs = self._group(obs)
        self.episode_length_buf = torch.zeros(self.num_envs, dtype=torch.long)
        self.steps = 0
        """Env steps taken, summed over envs."""

    def _group(self, obs: np.ndarray) -> TensorDict:
        return TensorDict(
            {"policy": torch.as_tensor(obs, dtype=torch.float32)}, batch_size=[self.num_envs]
        )

    def get_observations(self) -> TensorDict:
        return self._obs

    def step(self, actions: torch.Tensor):
        obs, rew, term, trunc, _ = self.env.step(actions.detach().cpu().numpy())
        self.steps += self.num_envs
        self._obs = self._group(obs)
        self.episode_length_buf = torch.as_tensor(self.env.steps, dtype=torch.long)
        dones = torch.as_tensor(term | trunc, dtype=torch.long)
        extras = {"time_outs": torch.as_tensor(trunc, dtype=torch.long), "log": {}}
        return self._obs, torch.as_tensor(rew, dtype=torch.float32), dones, extras
