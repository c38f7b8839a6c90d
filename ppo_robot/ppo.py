"""PPO for continuous actions: it acts and it updates; the runner owns the loop.

Objectives: the clipped surrogate (PPO2, Schulman et al. 2017, eq. 7) or the adaptive-KL
penalty (PPO1, eq. 8, beta doubled/halved around a target KL). Optional value-loss
clipping, entropy bonus, gradient-norm clipping, learning-rate schedules (constant, linear,
adaptive by KL as in RSL-RL), KL early stop and advantages recomputed before each epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ppo_robot.config import PPOConfig
from ppo_robot.networks import Actor, Critic
from ppo_robot.storage import Batch, RolloutStorage


def gaussian_kl(mu0, sigma0, mu1, sigma1) -> torch.Tensor:
    """KL(N0 || N1) of diagonal Gaussians, summed over action dims -> (B,)."""
    return (
        torch.log(sigma1 / sigma0)
        + (sigma0.square() + (mu0 - mu1).square()) / (2.0 * sigma1.square())
        - 0.5
    ).sum(-1)


def clipped_surrogate(ratio: torch.Tensor, adv: torch.Tensor, clip: float) -> torch.Tensor:
    """-E[min(r A, clip(r, 1-e, 1+e) A)] (a loss to minimize)."""
    return -torch.min(ratio * adv, torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * adv).mean()


def kl_penalty_loss(
    ratio: torch.Tensor, adv: torch.Tensor, kl: torch.Tensor, beta: float
) -> torch.Tensor:
    """-E[r A - beta KL] (PPO1's penalized objective, a loss to minimize)."""
    return -(ratio * adv).mean() + beta * kl.mean()


def value_loss(values, old_values, returns, clip: float) -> torch.Tensor:
    """Squared error, optionally clipped around the old value (clip <= 0 disables)."""
    if clip > 0:
        clipped = old_values + torch.clamp(values - old_values, -clip, clip)
        return torch.max((values - returns).square(), (clipped - returns).square()).mean()
    return (values - returns).square().mean()


def adam(params: list[torch.Tensor], lr: float) -> torch.optim.Adam:
    """Adam with the fused CPU kernel where torch has one (>= 2.4): one pass over each
    parameter instead of a dozen elementwise ops. HalfCheetah's update (160 minibatches of
    64) runs 1.12-1.17x faster at one thread (`python benchmarks/update_threads.py`)."""
    try:
        return torch.optim.Adam(params, lr=lr, eps=1e-5, fused=True)
    except (RuntimeError, TypeError):  # older torch: no fused kernel for CPU tensors
        return torch.optim.Adam(params, lr=lr, eps=1e-5)


@dataclass
class UpdateStats:
    policy_loss: float
    value_loss: float
    entropy: float
    kl: float
    clip_frac: float
    lr: float
    beta: float
    epochs_run: float


class PPO:
    def __init__(self, actor: Actor, critic: Critic, cfg: PPOConfig, total_updates: int) -> None:
        self.actor, self.critic, self.cfg = actor, critic, cfg
        self.params = list(actor.parameters()) + list(critic.parameters())
        self.optimizer = adam(self.params, cfg.lr)
        self.lr = cfg.lr
        self.beta = cfg.kl_beta
        self.total_updates = max(1, total_updates)
        self.updates_done = 0

    @torch.no_grad()
    def act(self, obs: torch.Tensor):
        """Sample actions; returns (action, logp, value, mu, sigma)."""
        mu = self.actor(obs)
        sigma = self.actor.log_std.exp().expand_as(mu)
        action = mu + sigma * torch.randn_like(mu)
        logp = torch.distributions.Normal(mu, sigma, validate_args=False).log_prob(action).sum(-1)
        value = self.critic(self.actor.normalizer(obs))
        return action, logp, value, mu, sigma

    @torch.no_grad()
    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self.actor.normalizer(obs))

    def _set_lr(self, lr: float) -> None:
        self.lr = lr
        for g in self.optimizer.param_groups:
            g["lr"] = lr

    def loss(self, b: Batch) -> tuple[torch.Tensor, dict]:
        cfg = self.cfg
        dist = self.actor.distribution(b.obs)
        logp = dist.log_prob(b.actions).sum(-1)
        ratio = torch.exp(logp - b.logp)
        adv = b.advantages
        if cfg.norm_adv:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        kl = gaussian_kl(b.mu, b.sigma, dist.loc, dist.scale)
        if cfg.objective == "clip":
            pol = clipped_surrogate(ratio, adv, cfg.clip)
        else:
            pol = kl_penalty_loss(ratio, adv, kl, self.beta)
        values = self.critic(self.actor.normalizer(b.obs))
        vloss = value_loss(values, b.values, b.returns, cfg.value_clip)
        ent = dist.entropy().sum(-1).mean()
        total = pol + cfg.vf_coef * vloss - cfg.ent_coef * ent
        with torch.no_grad():
            info = {
                "policy_loss": pol.item(),
                "value_loss": vloss.item(),
                "entropy": ent.item(),
                "kl": kl.mean().item(),
                "clip_frac": ((ratio - 1.0).abs() > cfg.clip).float().mean().item(),
            }
        return total, info

    def _recompute_advantages(self, storage: RolloutStorage):
        """Before each epoch after the first: GAE again with the critic as it is now (and the
        value targets, unless `recompute_targets` is off)."""
        T, N = storage.T, storage.N

        @torch.no_grad()
        def refresh(epoch: int) -> None:
            if epoch == 0:  # the critic has not changed since the rollout
                return
            values = self.value(storage.obs.flatten(0, 1)).view(T, N)
            last = self.value(storage.last_obs)
            storage.compute_returns(
                last,
                self.cfg.gamma,
                self.cfg.lam,
                values=values,
                targets=self.cfg.recompute_targets,
            )

        return refresh

    def update(self, storage: RolloutStorage, generator: torch.Generator) -> UpdateStats:
        cfg = self.cfg
        if cfg.lr_schedule == "linear":
            self._set_lr(cfg.lr * max(0.0, 1.0 - self.updates_done / self.total_updates))
        sums = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "kl": 0.0, "clip_frac": 0.0}
        n = 0
        stopped_at = float(cfg.epochs)
        refresh = self._recompute_advantages(storage) if cfg.recompute_adv else None
        batches = storage.minibatches(cfg.minibatches, cfg.epochs, generator, refresh)
        for i, b in enumerate(batches):
            total, info = self.loss(b)
            if not torch.isfinite(total):
                raise FloatingPointError(f"loss is {total.item()} at update {self.updates_done}")
            if cfg.kl_stop > 0 and info["kl"] > cfg.kl_stop:
                stopped_at = i / cfg.minibatches
                break
            if cfg.lr_schedule == "adaptive":
                kl = info["kl"]
                if kl > 2.0 * cfg.desired_kl:
                    self._set_lr(max(cfg.lr_min, self.lr / 1.5))
                elif 0.0 < kl < 0.5 * cfg.desired_kl:
                    self._set_lr(min(cfg.lr_max, self.lr * 1.5))
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
            self.optimizer.step()
            for k in sums:
                sums[k] += info[k]
            n += 1
        if cfg.objective == "kl":
            kl_mean = sums["kl"] / max(n, 1)
            if kl_mean > 1.5 * cfg.desired_kl:
                self.beta *= 2.0
            elif kl_mean < cfg.desired_kl / 1.5:
                self.beta /= 2.0
        self.updates_done += 1
        avg = {k: v / max(n, 1) for k, v in sums.items()}
        return UpdateStats(**avg, lr=self.lr, beta=self.beta, epochs_run=stopped_at)

    def state_dict(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "lr": self.lr,
            "beta": self.beta,
            "updates_done": self.updates_done,
        }

    def load_state_dict(self, d: dict) -> None:
        self.optimizer.load_state_dict(d["optimizer"])
        self._set_lr(d["lr"])
        self.beta = d["beta"]
        self.updates_done = d["updates_done"]
