"""Running observation normalizer, a torch module that lives inside the actor.

Its statistics are buffers, so they are saved in the checkpoint's state dict and frozen
into the exported ONNX graph; nothing about normalization is re-implemented at deploy.
"""

from __future__ import annotations

import torch
from torch import nn


class RunningNorm(nn.Module):
    """(x - mean) / sqrt(var + eps), clipped; statistics merged batch-wise (Chan et al.)."""

    def __init__(self, dim: int, clip: float = 10.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.clip = float(clip)
        self.eps = float(eps)
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(dim, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merge the statistics of a batch (B, dim) into the running ones."""
        x = x.reshape(-1, self.mean.numel()).to(torch.float64)
        n = x.shape[0]
        if n == 0:
            return
        b_mean = x.mean(0)
        b_var = x.var(0, unbiased=False)
        tot = self.count + n
        delta = b_mean - self.mean
        self.mean += delta * n / tot
        m2 = self.var * self.count + b_var * n + delta.square() * self.count * n / tot
        self.var.copy_(m2 / tot)
        self.count.copy_(tot)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.mean.to(x.dtype)
        std = torch.sqrt(self.var + self.eps).to(x.dtype)
        return torch.clamp((x - mean) / std, -self.clip, self.clip)


class ReturnScaler:
    """Scales rewards by the running std of the discounted return (optional)."""

    def __init__(self, num_envs: int, gamma: float) -> None:
        self.gamma = gamma
        self.ret = torch.zeros(num_envs, dtype=torch.float64)
        self.norm = RunningNorm(1)

    def __call__(self, reward: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        self.ret = self.ret * self.gamma + reward.to(torch.float64)
        self.norm.update(self.ret[:, None])
        self.ret[done] = 0.0
        return (reward / torch.sqrt(self.norm.var[0] + 1e-8).to(reward.dtype)).clamp(-10, 10)

    def state_dict(self) -> dict:
        return {"ret": self.ret.clone(), "norm": self.norm.state_dict()}

    def load_state_dict(self, d: dict) -> None:
        self.ret = d["ret"].clone()
        self.norm.load_state_dict(d["norm"])
