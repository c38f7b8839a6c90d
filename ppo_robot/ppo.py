"""PPO for continuous actions: it acts and it updates; the runner owns the loop.

Objectives: the clipped surrogate (PPO2, Schulman et al. 2017, eq. 7) or the adaptive-KL
penalty (PPO1, eq. 8; section 4: after each update's epochs, d = E[KL[pi_old, pi]] over the
batch doubles beta above 1.5 x the target and halves it below target / 1.5). Optional
value-loss clipping, entropy bonus, gradient-norm clipping, learning-rate schedules
(constant, linear, adaptive by each minibatch's KL as in RSL-RL; `auto`: adaptive under the
clipped objective, constant under the KL penalty, so that one controller acts on the KL),
KL early stop and advantages recomputed before each epoch.
"""

from __future__ import annotations

import inspect
import logging
import sys
from dataclasses import dataclass

import torch

from ppo_robot.config import PPOConfig
from ppo_robot.networks import Actor, Critic
from ppo_robot.storage import Batch, RolloutStorage

log = logging.getLogger(__name__)


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
    64) runs 1.12-1.17x faster at one thread (`python benchmarks/update_threads.py`).
    Built and stepped without importing torch._dynamo (`_skip_dynamo_import`)."""
    skip = _skip_dynamo_import()
    try:
        opt = torch.optim.Adam(params, lr=lr, eps=1e-5, fused=True)
    except (RuntimeError, TypeError):  # older torch: no fused kernel for CPU tensors
        opt = torch.optim.Adam(params, lr=lr, eps=1e-5)
    if skip:
        raw = inspect.unwrap(type(opt).step)

        def step(closure=None):
            with torch.no_grad():  # what the skipped wrapper did (differentiable=False)
                return raw(opt, closure)

        opt.step = step
    return opt


_WRAPPED_OPTIMIZER_METHODS = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")


def _skip_dynamo_import() -> bool:
    """torch.optim imports torch._dynamo on an optimizer's first use (1.1 s on a quiet 2-core
    machine, 2.8 s at load 3.5: the largest part of the train's start-up) only to keep
    torch.compile from tracing into it: the methods above are wrapped by
    `torch._disable_dynamo` (which imports it on the first call, then caches the disabled
    form on the function), and `step` by `_use_grad` (which imports it to place a graph break,
    then runs the step with grad mode off). Nothing here is compiled, so where torch._dynamo
    is not loaded yet each method's cache is set to the method itself and `adam` steps with
    the unwrapped `step` under no_grad: the same arithmetic (bit-identical,
    tests/test_ppo.py), no import. False (nothing changed) where torch._dynamo is loaded
    already or this torch has no such wrappers."""
    if "torch._dynamo" in sys.modules:
        return False
    fns = [
        getattr(getattr(torch.optim.Optimizer, n, None), "__wrapped__", None)
        for n in _WRAPPED_OPTIMIZER_METHODS
    ]
    if any(fn is None for fn in fns):
        return False
    for fn in fns:
        if getattr(fn, "__dynamo_disable", None) is None:
            setattr(fn, "__dynamo_disable", fn)  # noqa: B010 - the wrapper's own cache
    return True


def adapt_beta(beta: float, kl: float, target: float) -> float:
    """PPO1's rule (Schulman et al. 2017, section 4) on d = E[KL[pi_old, pi]] after the update:
    beta x 2 where d > 1.5 target, beta / 2 where d < target / 1.5, else unchanged."""
    if kl > 1.5 * target:
        return beta * 2.0
    if kl < target / 1.5:
        return beta / 2.0
    return beta


def adapt_lr(lr: float, kl: float, cfg: PPOConfig) -> float:
    """RSL-RL's adaptive learning rate on one minibatch's KL before its step: / 1.5 above
    2 x desired_kl (not below lr_min), x 1.5 below half of it (not above lr_max)."""
    if kl > 2.0 * cfg.desired_kl:
        return max(cfg.lr_min, lr / 1.5)
    if 0.0 < kl < 0.5 * cfg.desired_kl:
        return min(cfg.lr_max, lr * 1.5)
    return lr


@dataclass
class UpdateStats:
    """One update's figures (the runner's metrics.csv columns of the same names)."""

    policy_loss: float
    """Policy loss, mean over the minibatch steps taken."""
    value_loss: float
    """Value loss, mean over the minibatch steps taken."""
    kl: float
    """KL(pi_old || pi) on each minibatch before its step, mean over the steps taken (what
    the adaptive learning rate and kl_stop see; near 0 in the first epoch)."""
    kl_post: float
    """KL(pi_old || pi) over the whole batch after the update's epochs (what beta adapts on
    under objective=kl)."""
    entropy: float
    """Policy entropy, mean over the minibatch steps taken."""
    clip_frac: float
    """Fraction of samples whose ratio lies outside 1 +- clip, mean over the steps taken."""
    lr: float
    """Learning rate at the end of the update."""
    beta: float
    """KL penalty coefficient after this update's adaptation (objective=kl)."""
    epochs_run: float
    """Epochs run: `epochs`, or where kl_stop stopped (minibatch steps / minibatches)."""


class PPO:
    def __init__(self, actor: Actor, critic: Critic, cfg: PPOConfig, total_updates: int) -> None:
        self.actor, self.critic, self.cfg = actor, critic, cfg
        self.params = list(actor.parameters()) + list(critic.parameters())
        self.optimizer = adam(self.params, cfg.lr)
        self.lr = cfg.lr
        self.lr_schedule = cfg.resolved_lr_schedule()
        if cfg.objective == "kl" and self.lr_schedule == "adaptive":
            log.warning(
                "ppo.lr_schedule=adaptive with ppo.objective=kl: the learning rate and the KL "
                "penalty's beta both adapt on the KL"
            )
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

    @torch.no_grad()
    def batch_kl(self, storage: RolloutStorage) -> float:
        """E[KL(pi_old || pi)] over the whole batch: pi_old is the policy that collected it
        (its mu and sigma are in storage), pi the actor as it is now."""
        dist = self.actor.distribution(storage.obs.flatten(0, 1))
        old_mu, old_sigma = storage.mu.flatten(0, 1), storage.sigma.flatten(0, 1)
        return gaussian_kl(old_mu, old_sigma, dist.loc, dist.scale).mean().item()

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

    def _step(self, total: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        self.optimizer.step()

    def update(self, storage: RolloutStorage, generator: torch.Generator) -> UpdateStats:
        """`epochs` passes of minibatch steps over the batch (stopped before the first
        minibatch whose KL exceeds kl_stop), then beta adapts on the post-update KL."""
        cfg = self.cfg
        if self.lr_schedule == "linear":
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
            if self.lr_schedule == "adaptive":
                self._set_lr(adapt_lr(self.lr, info["kl"], cfg))
            self._step(total)
            for k in sums:
                sums[k] += info[k]
            n += 1
        kl_post = self.batch_kl(storage)
        if cfg.objective == "kl":
            self.beta = adapt_beta(self.beta, kl_post, cfg.desired_kl)
        self.updates_done += 1
        avg = {k: v / max(n, 1) for k, v in sums.items()}
        return UpdateStats(
            **avg, kl_post=kl_post, lr=self.lr, beta=self.beta, epochs_run=stopped_at
        )

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
