"""Gaussian actor with state-independent log-std, and a separate critic.

The actor owns the observation normalizer; the critic reads the same normalized input.
`Actor.forward` gives the mean action, which is what `export.onnx` freezes into the graph.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ppo_robot.normalizer import RunningNorm

ACTIVATIONS = {"tanh": nn.Tanh, "elu": nn.ELU, "relu": nn.ReLU, "silu": nn.SiLU}


def mlp(sizes: list[int], activation: str, out_gain: float, ortho: bool = True) -> nn.Sequential:
    """MLP, orthogonally initialised with zero biases (the last layer gets its own gain), or
    with PyTorch's default `nn.Linear` initialisation where `ortho` is false."""
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        lin = nn.Linear(sizes[i], sizes[i + 1])
        last = i == len(sizes) - 2
        if ortho:
            nn.init.orthogonal_(lin.weight, out_gain if last else math.sqrt(2))
            nn.init.zeros_(lin.bias)
        layers.append(lin)
        if not last:
            layers.append(act())
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """obs -> normalized obs -> MLP -> mean action; log-std is a free parameter."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: list[int],
        activation: str = "tanh",
        init_log_std: float = 0.0,
        obs_clip: float = 10.0,
        ortho_init: bool = True,
    ) -> None:
        super().__init__()
        self.normalizer = RunningNorm(obs_dim, clip=obs_clip)
        self.net = mlp([obs_dim, *hidden, act_dim], activation, 0.01, ortho_init)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalizer(obs))

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Normal:
        mu = self.forward(obs)
        # no argument validation: it checks every tensor on each call, in the update's hot loop
        return torch.distributions.Normal(mu, self.log_std.exp().expand_as(mu), validate_args=False)


class Critic(nn.Module):
    """Normalized obs -> value."""

    def __init__(
        self, obs_dim: int, hidden: list[int], activation: str = "tanh", ortho_init: bool = True
    ) -> None:
        super().__init__()
        self.net = mlp([obs_dim, *hidden, 1], activation, 1.0, ortho_init)

    def forward(self, norm_obs: torch.Tensor) -> torch.Tensor:
        return self.net(norm_obs).squeeze(-1)
