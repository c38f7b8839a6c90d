"""The trainers `benchmarks/time_to_score.py` races, each on a `tts_common.Clock`: ours (the
real `ppo_robot.runner.Runner` with the task's shipped config), Stable-Baselines3 PPO (its
defaults, or the RL Zoo's tuned hyperparameters) and RSL-RL's PPO on our batched engine.
Each stops at the first update after its budget is spent (one update at least), its
snapshots on the clock; every snapshot's policy maps raw observations to actions
deterministically (the mean action).
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from benchmarks.tts_common import Clock, ScoreTask, compose_train, load_spec, randomization_of

GIANT_STEPS = 10**10
"""The peers' step budget: they stop on the clock, never on steps (their learning rates are
constant or adaptive, so this number changes nothing else)."""


class BudgetSpent(Exception):
    """Raised from inside a trainer's loop when its clock's budget is spent."""


def peer_config(name: str) -> dict[str, Any]:
    return load_spec()["peers"][name]


def _threads(n: int) -> None:
    from ppo_robot.runner import usable_cpus

    torch.set_num_threads(n or usable_cpus())


# ---------------------------------------------------------------------------- ours


def train_ours(task: ScoreTask, seed: int, clock: Clock, overrides: list[str]) -> dict[str, Any]:
    """`python -m ppo_robot.train env=<task> seed=S` as its `train()` runs it (the shipped
    config, its own periodic evaluation, best.pt and rollback), stopped by the clock or at
    the config's total_steps, whichever comes first."""
    from omegaconf import OmegaConf

    from ppo_robot.cli import typed_config
    from ppo_robot.config import TrainConfig
    from ppo_robot.runner import Runner

    class ClockedRunner(Runner):
        def _update_step(self):
            stats = super()._update_step()
            if clock.after_update(self.step, lambda: copy.deepcopy(self.actor).eval()):
                raise BudgetSpent
            return stats

    with tempfile.TemporaryDirectory() as d:
        # a fixed budget: the benchmark's clock, not stop_at, ends the run (its hold is
        # judged on the shared evaluator's snapshots)
        cfg = compose_train(task, seed, f"{d}/run", ["stop_at=null", *overrides])
        typed = typed_config(cfg, TrainConfig)
        cfg_dict = OmegaConf.to_container(cfg, resolve=True)
        runner = ClockedRunner(typed, cfg_dict, randomization_of(cfg))
        try:
            status = runner.train()["status"]
        except BudgetSpent:
            status = "budget spent"
        clock.take(clock.wall(), runner.step, lambda: copy.deepcopy(runner.actor).eval())
    keys = ("env", "ppo", "total_steps", "eval_every", "eval_episodes", "rollback_drop")
    return {"status": status, "config": {k: cfg_dict[k] for k in keys}}


# ---------------------------------------------------------------------------- SB3


class SB3Policy:
    """An SB3 policy snapshot: VecNormalize's observation scaling (where the run had it)
    frozen at the snapshot, then the policy's deterministic action."""

    def __init__(self, policy, obs_rms=None, clip_obs: float = 10.0, eps: float = 1e-8) -> None:
        self.policy, self.obs_rms, self.clip_obs, self.eps = policy, obs_rms, clip_obs, eps

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.numpy()
        if self.obs_rms is not None:
            x = (x - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + self.eps)
            x = np.clip(x, -self.clip_obs, self.clip_obs)
        action, _ = self.policy.predict(x.astype(np.float32), deterministic=True)
        return torch.as_tensor(action)


def _sb3_kwargs(hyper: dict[str, Any]) -> dict[str, Any]:
    """time_to_score.yaml's hyperparameters -> PPO's keyword arguments (activation by name)."""
    kw = copy.deepcopy(hyper)
    pk = kw.get("policy_kwargs")
    if pk and "activation_fn" in pk:
        pk["activation_fn"] = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[pk["activation_fn"]]
    return kw


def _copy_sb3_policy(policy):
    """A frozen copy of an SB3 policy (rebuilt from its constructor arguments, as SB3's own
    save does: a deepcopy fails on the distribution tensors a forward pass leaves in it)."""
    clone = type(policy)(**policy._get_constructor_parameters())
    clone.load_state_dict(policy.state_dict())
    return clone.eval()


def _sb3_env(task: ScoreTask, seed: int, normalize: bool, gamma: float):
    import gymnasium as gym
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    kwargs = {}
    if task.gym_id.startswith("ppo_robot/"):  # our robot: under the task's randomization
        kwargs["randomization"] = randomization_of(compose_train(task, seed, "unused"))
    venv = DummyVecEnv([lambda: Monitor(gym.make(task.gym_id, **kwargs))])  # seeded by PPO(seed=)
    return VecNormalize(venv, gamma=gamma) if normalize else venv


def train_sb3(name: str) -> Callable[..., dict[str, Any]]:
    """A trainer for the SB3 peer `name` of time_to_score.yaml (sb3, sb3_zoo)."""

    def train(task: ScoreTask, seed: int, clock: Clock, overrides: list[str]) -> dict[str, Any]:
        from stable_baselines3 import PPO
        from stable_baselines3.common.callbacks import BaseCallback

        peer = peer_config(name)
        if task.name not in peer["tasks"]:
            raise KeyError(f"{name} has no configuration for {task.name} (time_to_score.yaml)")
        _threads(peer["torch_threads"])
        hyper = _sb3_kwargs(peer["tasks"][task.name])
        env = _sb3_env(task, seed, peer["normalize"], hyper.get("gamma", 0.99))
        model = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **hyper)

        def snap() -> SB3Policy:
            rms = copy.deepcopy(env.obs_rms) if peer["normalize"] else None
            return SB3Policy(_copy_sb3_policy(model.policy), rms)

        class OnClock(BaseCallback):
            def _on_rollout_start(self) -> None:  # the policy after the previous update
                clock.after_update(self.num_timesteps, snap)

            def _on_step(self) -> bool:  # stop on the budget, after one update at least
                return not clock.spent() or self.model._n_updates == 0

        model.learn(total_timesteps=GIANT_STEPS, callback=OnClock())
        clock.take(clock.wall(), model.num_timesteps, snap)
        return {"status": "budget spent", "config": {"n_envs": 1, **peer["tasks"][task.name]}}

    return train


# ---------------------------------------------------------------------------- RSL-RL


class RslPolicy:
    """An RSL-RL actor snapshot (its TorchScript-ready copy: normalizer, MLP, mean action)."""

    def __init__(self, module) -> None:
        self.module = module.eval()

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        return self.module(obs)


def train_rsl_rl(task: ScoreTask, seed: int, clock: Clock, overrides: list[str]) -> dict[str, Any]:
    """RSL-RL's OnPolicyRunner on our batched engine (`rsl_rl_adapter.RslRlEnv`), one learning
    iteration at a time so that the clock sees every update."""
    from rsl_rl.runners import OnPolicyRunner

    from benchmarks.rsl_rl_adapter import RslRlEnv
    from envs.make import make_env

    peer = peer_config("rsl_rl")
    _threads(peer["torch_threads"])
    torch.manual_seed(seed)
    cfg = compose_train(task, seed, "unused")
    n = int(peer["num_envs"][task.name])
    env = RslRlEnv(make_env(cfg.env, n, seed, randomization_of(cfg)), seed)
    train_cfg = copy.deepcopy(peer["runner"])
    runner = OnPolicyRunner(env, train_cfg, log_dir=None, device="cpu")

    def snap() -> RslPolicy:
        return RslPolicy(runner.alg.get_policy().as_jit())

    runner.learn(num_learning_iterations=1)  # one update at least, as the others
    while not clock.after_update(env.steps, snap):
        runner.learn(num_learning_iterations=1)
    return {"status": "budget spent", "config": {"num_envs": n, **peer["runner"]}}


TRAINERS: dict[str, Callable[..., dict[str, Any]]] = {
    "ours": train_ours,
    "sb3": train_sb3("sb3"),
    "sb3_zoo": train_sb3("sb3_zoo"),
    "rsl_rl": train_rsl_rl,
}
"""Trainer name (--peers) -> trainer(task, seed, clock, overrides) -> {status, config}."""
