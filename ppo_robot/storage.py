"""Rollout storage: (T, N, ...) tensors allocated once and written at a cursor, and GAE.

Truncation is not termination: for an env whose episode was cut by the time limit at step
t, the runner adds gamma * V(final observation) to r_t before `add`, so the episode
boundary cuts the recursion while the value beyond the cut is still counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass
class Batch:
    obs: torch.Tensor
    actions: torch.Tensor
    logp: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    mu: torch.Tensor
    sigma: torch.Tensor


class RolloutStorage:
    def __init__(self, T: int, N: int, obs_dim: int, act_dim: int) -> None:
        self.T, self.N = T, N
        f = torch.float32
        self.obs = torch.zeros(T, N, obs_dim, dtype=f)
        self.actions = torch.zeros(T, N, act_dim, dtype=f)
        self.logp = torch.zeros(T, N, dtype=f)
        self.values = torch.zeros(T, N, dtype=f)
        self.rewards = torch.zeros(T, N, dtype=f)
        self.dones = torch.zeros(T, N, dtype=f)
        self.mu = torch.zeros(T, N, act_dim, dtype=f)
        self.sigma = torch.zeros(T, N, act_dim, dtype=f)
        self.advantages = torch.zeros(T, N, dtype=f)
        self.returns = torch.zeros(T, N, dtype=f)
        self.step = 0

    def add(self, obs, actions, logp, values, rewards, dones, mu, sigma) -> None:
        t = self.step
        if t >= self.T:
            raise IndexError("rollout storage is full; call clear() after the update")
        self.obs[t].copy_(obs)
        self.actions[t].copy_(actions)
        self.logp[t].copy_(logp)
        self.values[t].copy_(values)
        self.rewards[t].copy_(rewards)
        self.dones[t].copy_(dones)
        self.mu[t].copy_(mu)
        self.sigma[t].copy_(sigma)
        self.step = t + 1

    def clear(self) -> None:
        self.step = 0

    def compute_returns(self, last_values: torch.Tensor, gamma: float, lam: float) -> None:
        compute_gae(
            self.rewards, self.values, self.dones, last_values, gamma, lam, out=self.advantages
        )
        torch.add(self.advantages, self.values, out=self.returns)

    def minibatches(
        self, n_minibatches: int, epochs: int, generator: torch.Generator
    ) -> Iterator[Batch]:
        total = self.T * self.N
        size = total // n_minibatches
        flat = {
            "obs": self.obs.flatten(0, 1),
            "actions": self.actions.flatten(0, 1),
            "logp": self.logp.flatten(),
            "values": self.values.flatten(),
            "advantages": self.advantages.flatten(),
            "returns": self.returns.flatten(),
            "mu": self.mu.flatten(0, 1),
            "sigma": self.sigma.flatten(0, 1),
        }
        for _ in range(epochs):
            perm = torch.randperm(total, generator=generator)
            for k in range(n_minibatches):
                idx = perm[k * size : (k + 1) * size]
                yield Batch(**{name: t[idx] for name, t in flat.items()})


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_values: torch.Tensor,
    gamma: float,
    lam: float,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Generalized advantage estimation over (T, N); `dones[t]` ends the episode after step t."""
    T = rewards.shape[0]
    adv = out if out is not None else torch.zeros_like(rewards)
    running = torch.zeros_like(last_values)
    for t in reversed(range(T)):
        next_v = last_values if t == T - 1 else values[t + 1]
        live = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_v * live - values[t]
        running = delta + gamma * lam * live * running
        adv[t] = running
    return adv
