"""Typed configs for training and evaluation (Hydra structured configs), registered by
ppo_robot.train (`train_schema`, env/`env_schema`, ppo/`ppo_schema`) and ppo_robot.evaluate
(`evaluate_schema`). The other entry points' schemas live beside their code
(export/config.py, firmware_bridge/*/..._config.py).

The YAML files in `configs/` are validated against these dataclasses: an unknown key or a
wrong type is refused when Hydra composes the config. `validate()` checks what types
cannot (ranges, divisibility) with one-line errors naming the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ppo_robot.errors import UserError


@dataclass
class EnvConfig:
    name: str = "furuta"
    """Config name of the task (the file in configs/env/)."""
    kind: str = "robot"
    """'robot' (a shipped robot spec) or 'gym' (a Gymnasium MuJoCo task)."""
    robot: str = "furuta"
    """Robot spec name (kind=robot)."""
    task: str | None = None
    """The robot's task (kind=robot, e.g. balance); null = the robot's default task."""
    control_hz: float = 100.0
    """Control rate (kind=robot); must be a whole number of physics steps."""
    model_xml: str | None = None
    """Alternate MJCF with the same sensors and actuators (kind=robot); null = the spec's."""
    num_envs: int = 256
    """Envs stepped together."""
    nthread: int = 2
    """MuJoCo rollout threads."""


@dataclass
class PPOConfig:
    objective: str = "clip"
    """'clip' (PPO2 clipped surrogate) or 'kl' (PPO1 adaptive-KL penalty)."""
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer sizes of actor and critic."""
    activation: str = "tanh"
    """tanh, elu, relu or silu."""
    init_log_std: float = 0.0
    """Initial log standard deviation of the Gaussian policy."""
    ortho_init: bool = True
    """Orthogonal weights (gain sqrt 2; last layer 0.01 actor, 1 critic) and zero biases;
    false: PyTorch's default nn.Linear initialisation (SB3's ortho_init=False)."""
    n_steps: int = 32
    """Rollout length T per env per update (batch = T x num_envs)."""
    epochs: int = 5
    """Passes over the batch per update."""
    minibatches: int = 4
    """Minibatches per epoch; must divide T x num_envs."""
    lr: float = 3e-4
    """(Initial) learning rate."""
    lr_schedule: str = "auto"
    """constant, linear (lr x (1 - updates done / all updates)), adaptive (RSL-RL: / 1.5 when
    a minibatch's KL before its step is above 2 x desired_kl, x 1.5 below half of it) or
    auto: adaptive under objective=clip, constant under kl (where beta adapts on the KL;
    kl with adaptive is allowed, with a warning)."""
    lr_min: float = 1e-5
    """Lower bound of the adaptive schedule."""
    lr_max: float = 1e-2
    """Upper bound of the adaptive schedule."""
    desired_kl: float = 0.01
    """KL target of the adaptive schedule (each minibatch's KL before its step) and of the
    KL penalty (objective=kl: the KL over the batch after the update's epochs doubles beta
    above 1.5 x this, halves it below this / 1.5)."""
    kl_beta: float = 1.0
    """Initial KL penalty coefficient (objective=kl)."""
    kl_stop: float = 0.0
    """Stop an update before the first minibatch whose KL exceeds this (0 = off)."""
    gamma: float = 0.99
    """Discount."""
    lam: float = 0.95
    """GAE lambda."""
    clip: float = 0.2
    """Ratio clip epsilon."""
    value_clip: float = 0.0
    """Value-loss clip around the old value (0 = off)."""
    vf_coef: float = 1.0
    """Value loss weight."""
    ent_coef: float = 0.0
    """Entropy bonus weight."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip (0 = off)."""
    norm_adv: bool = True
    """Normalize advantages per minibatch."""
    recompute_adv: bool = False
    """Recompute GAE advantages with the current critic before each epoch after the first
    (Andrychowicz et al. 2020; Tianshou's recompute_advantage)."""
    recompute_targets: bool = True
    """With recompute_adv: recompute the critic's value targets too (false: they stay those
    of the critic that collected the batch, so the critic does not chase its own targets)."""
    norm_reward: bool = False
    """Scale rewards by the running std of the discounted return."""
    obs_clip: float = 10.0
    """Clip of the normalized observation."""

    def resolved_lr_schedule(self) -> str:
        """The learning-rate schedule in force: `lr_schedule` with auto resolved by objective."""
        if self.lr_schedule == "auto":
            return "adaptive" if self.objective == "clip" else "constant"
        return self.lr_schedule


@dataclass
class StopAt:
    """A target that ends training once periodic evaluations reach it `evals` times in a row.
    At most one of success and return_mean; neither (or `stop_at=null`): train for
    total_steps."""

    success: float | None = None
    """Evaluation success rate to reach, in (0, 1] (robot tasks)."""
    return_mean: float | None = None
    """Evaluation mean return to reach (Gymnasium tasks, or robots by return)."""
    evals: int = 2
    """Consecutive periodic evaluations at or above the target before training stops."""

    @property
    def enabled(self) -> bool:
        """Whether a target is set."""
        return self.success is not None or self.return_mean is not None

    def reached(self, success_rate: float | None, return_mean: float) -> bool:
        """Whether one evaluation's figures meet the target."""
        if self.success is not None:
            return success_rate is not None and success_rate >= self.success
        return math.isfinite(return_mean) and return_mean >= self.return_mean

    def describe(self) -> str:
        """The target in words, e.g. 'success >= 0.95 for 2 evaluations'."""
        what = "success" if self.success is not None else "return"
        value = self.success if self.success is not None else self.return_mean
        return f"{what} >= {value:g} for {self.evals} evaluation{'s' * (self.evals > 1)}"


@dataclass
class TrainConfig:
    env: EnvConfig = field(default_factory=EnvConfig)
    """Task (config group env=)."""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """Algorithm hyperparameters (config group ppo=)."""
    randomization: Any = None
    """Domain randomization (config group randomization=), schema in envs/randomization.py."""
    seed: int = 0
    """Seed of envs, networks and sampling."""
    total_steps: int = 3_000_000
    """Environment steps (summed over envs) to train for."""
    run_dir: str = "runs/default"
    """Output folder: config, metrics.csv, TensorBoard events, checkpoints."""
    torch_threads: int = 1
    """Torch intra-op threads while collecting (MuJoCo's threads step the envs then)."""
    update_threads: int = 0
    """Torch intra-op threads in the PPO update, when MuJoCo is idle (0 = every CPU this
    process may run on)."""
    eval_every: int = 20
    """Deterministic evaluation every this many updates (0 = only at the end)."""
    eval_episodes: int = 32
    """Episodes per evaluation (run as one batch)."""
    rollback_drop: float = 0.0
    """When a periodic evaluation's return falls more than this fraction of |best| below the
    best evaluation's, training goes on from best.pt's actor, critic and optimizer (the env
    steps already spent still count; 0 = never)."""
    keep_checkpoints: bool = False
    """Also keep each evaluation's checkpoint as checkpoints/step_NNNNNNNNN.pt."""
    resume: str | None = None
    """Checkpoint to continue from (same config), e.g. runs/x/checkpoints/last.pt. Training
    goes on in run_dir (a new folder by default; the checkpoint's own run folder to go on
    there), which first receives the run's history: its best.pt (for rollback_drop and the
    summary) and its metrics.csv rows up to the checkpoint's update. The old folder is only
    read."""
    progress: bool = True
    """Live progress bar on stderr."""
    stop_at: StopAt | None = field(default_factory=StopAt)
    """Stop once periodic evaluation reaches a target and holds it (null = run total_steps;
    the default robot's env file turns it on). The summary then names the checkpoint that
    met it and gives `time_to_target_s` (from this command's start; a resumed run counts
    its own command and its own evaluations)."""

    def validate(self) -> None:
        """Range checks a type cannot express; raises UserError naming the key."""
        validate(self)


@dataclass
class EvalConfig:
    checkpoint: str = "???"
    """Checkpoint to evaluate."""
    episodes: int = 100
    """Episodes (run as one batch)."""
    randomization: Any = None
    """Randomization group to evaluate under (null = nominal dynamics)."""
    reality: str | None = None
    """A reality perturbation YAML (fixed values in the randomization schema)."""
    seed: int = 12345
    """Seed of the evaluation episodes."""
    log: str | None = None
    """Write the first episode as an MCAP rollout log (the deploy format) to this path."""
    out_dir: str | None = None
    """Where the JSON summary is saved (default: next to the checkpoint)."""

    def validate(self) -> None:
        """Range checks a type cannot express; raises UserError naming the key."""
        if self.episodes < 1:
            raise UserError(f"episodes must be >= 1, got {self.episodes}")
        if self.reality and (self.randomization or {}).get("params"):
            raise UserError("give either reality=PATH or randomization=..., not both")


def validate(cfg: TrainConfig) -> None:
    """Range checks a type cannot express; raises UserError naming the key."""
    p, e = cfg.ppo, cfg.env
    checks = [
        (p.lr > 0, f"ppo.lr must be > 0, got {p.lr}"),
        (p.n_steps >= 1, f"ppo.n_steps must be >= 1, got {p.n_steps}"),
        (p.epochs >= 1, f"ppo.epochs must be >= 1, got {p.epochs}"),
        (p.minibatches >= 1, f"ppo.minibatches must be >= 1, got {p.minibatches}"),
        (0 < p.gamma <= 1, f"ppo.gamma must be in (0, 1], got {p.gamma}"),
        (0 <= p.lam <= 1, f"ppo.lam must be in [0, 1], got {p.lam}"),
        (p.clip > 0, f"ppo.clip must be > 0, got {p.clip}"),
        (
            p.objective in ("clip", "kl"),
            f"ppo.objective must be 'clip' or 'kl', got '{p.objective}'",
        ),
        (
            p.lr_schedule in ("auto", "constant", "linear", "adaptive"),
            f"ppo.lr_schedule must be auto, constant, linear or adaptive, got '{p.lr_schedule}'",
        ),
        (
            p.activation in ("tanh", "elu", "relu", "silu"),
            f"ppo.activation: unknown '{p.activation}'",
        ),
        (all(h > 0 for h in p.hidden), f"ppo.hidden must be positive sizes, got {list(p.hidden)}"),
        (e.num_envs >= 1, f"env.num_envs must be >= 1, got {e.num_envs}"),
        (e.nthread >= 1, f"env.nthread must be >= 1, got {e.nthread}"),
        (e.kind in ("robot", "gym"), f"env.kind must be 'robot' or 'gym', got '{e.kind}'"),
        (cfg.total_steps > 0, f"total_steps must be > 0, got {cfg.total_steps}"),
        (cfg.torch_threads >= 1, f"torch_threads must be >= 1, got {cfg.torch_threads}"),
        (cfg.update_threads >= 0, f"update_threads must be >= 0, got {cfg.update_threads}"),
        (cfg.eval_episodes >= 1, f"eval_episodes must be >= 1, got {cfg.eval_episodes}"),
        (
            0 <= cfg.rollback_drop < 1,
            f"rollback_drop must be in [0, 1), got {cfg.rollback_drop}",
        ),
    ]
    for ok, msg in checks:
        if not ok:
            raise UserError(msg)
    if cfg.stop_at is not None:
        validate_stop_at(cfg.stop_at, e.kind)
    batch = p.n_steps * e.num_envs
    if batch % p.minibatches:
        raise UserError(
            f"ppo.minibatches={p.minibatches} does not divide the batch "
            f"ppo.n_steps x env.num_envs = {batch}"
        )


def validate_stop_at(s: StopAt, kind: str) -> None:
    """stop_at's checks; raises UserError naming the key."""
    if s.success is not None and s.return_mean is not None:
        raise UserError(
            f"stop_at: both stop_at.success={s.success} and stop_at.return_mean={s.return_mean} "
            "are set; set the other to null"
        )
    if s.success is not None and not 0 < s.success <= 1:
        raise UserError(f"stop_at.success must be in (0, 1], got {s.success}")
    if s.success is not None and kind == "gym":
        raise UserError(
            "stop_at.success: a Gymnasium task has no success rate; give stop_at.return_mean"
        )
    if s.return_mean is not None and not math.isfinite(s.return_mean):
        raise UserError(f"stop_at.return_mean must be finite, got {s.return_mean}")
    if s.evals < 1:
        raise UserError(f"stop_at.evals must be >= 1, got {s.evals}")
