"""Rollout storage: (T, N, ...) tensors allocated once and written at a cursor, and GAE.

Truncation is not termination: for an env whose episode was cut by the time limit at step
t, the runner adds gamma * V(final observation) to r_t before `add`, so the episode
boundary cuts the recursion while the value beyond the cut is still counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
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
        self.last_obs = torch.zeros(N, obs_dim, dtype=f)  # the observation after step T-1
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

    def compute_returns(
        self,
        last_values: torch.Tensor,
        gamma: float,
        lam: float,
        values: torch.Tensor | None = None,
        targets: bool = True,
    ) -> None:
        """GAE and value targets from the stored values, or from fresh `values` (T, N) of
        the same observations (recomputed advantages; the stored ones stay for value
        clipping). `targets=False` leaves the value targets as they are."""
        v = self.values if values is None else values
        compute_gae(self.rewards, v, self.dones, last_values, gamma, lam, out=self.advantages)
        if targets:
            torch.add(self.advantages, v, out=self.returns)

    def minibatches(
        self,
        n_minibatches: int,
        epochs: int,
        generator: torch.Generator,
        before_epoch: Callable[[int], None] | None = None,
    ) -> Iterator[Batch]:
        """Shuffled minibatches, `epochs` passes; `before_epoch(e)` runs before each pass
        (it may rewrite advantages and returns in place: the flat views see it)."""
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
        for epoch in range(epochs):
            if before_epoch is not None:
                before_epoch(epoch)
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
    """Generalized advantage estimation over (T, N); `dones[t]` ends the episode after step t.

    The TD errors and the per-step discounts are computed for the whole batch at once; only
    the backward recursion A_t = delta_t + gamma lam (1 - done_t) A_{t+1} walks the steps, on
    numpy views of N-vectors (a torch op per step costs several times more, and
    `recompute_adv` runs this before every epoch).
    """
    next_values = torch.cat((values[1:], last_values.reshape(1, -1)))
    live = 1.0 - dones
    delta = (rewards + gamma * next_values * live - values).numpy()
    decay = (gamma * lam * live).numpy()
    adv = out if out is not None else torch.zeros_like(rewards)
    a = adv.numpy()
    running = np.zeros_like(delta[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = delta[t] + decay[t] * running
        a[t] = running
    return adv
