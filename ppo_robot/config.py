"""Typed configs for training and evaluation (Hydra structured configs).

The YAML files in `configs/` are validated against these dataclasses: an unknown key or a
wrong type is refused when Hydra composes the config. `validate()` checks what types
cannot (ranges, divisibility) with one-line errors naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from ppo_robot.cli import UserError


@dataclass
class EnvConfig:
    name: str = "furuta"
    """Config name of the task (the file in configs/env/)."""
    kind: str = "robot"
    """'robot' (a shipped robot spec) or 'gym' (a Gymnasium MuJoCo task)."""
    robot: str = "furuta"
    """Robot spec name (kind=robot)."""
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
    stop_success: float = 0.0
    """Stop early once evaluation success reaches this (0 = never; robots only)."""


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


@dataclass
class ExportConfig:
    checkpoint: str = "???"
    """Checkpoint written by ppo_robot.train."""
    output: str = "???"
    """The .onnx file to write (a .json sidecar for humans is written beside it)."""
    parity_n: int = 10_000
    """Observations drawn from the normalizer statistics for the parity check (>= 10000)."""
    parity_tol: float = 1e-5
    """Largest allowed |onnxruntime - torch| over the parity observations."""
    seed: int = 0
    """Seed of the parity observations."""
    precision: str = "float64"
    """Arithmetic inside the graph: float64 (exact parity) or float32 (faster for big MLPs)."""


@dataclass
class SimRobotConfig:
    robot: str = "furuta"
    """Robot spec to simulate."""
    port: str | None = None
    """Serial port or URL to serve on; null = create a pseudo-terminal."""
    port_link: str | None = None
    """Place a symlink to the port here (removed on exit)."""
    model_xml: str | None = None
    """Alternate MJCF with the same sensors and actuators (a plant that is not the training model)."""
    reality: str | None = None
    """Reality perturbation YAML (randomization schema with fixed values)."""
    latency_s: float = 0.0
    """Extra command latency, seconds."""
    sensor_noise_std: float = 0.0
    """Gaussian noise on every sensor, in its units."""
    watchdog_ms: int = 50
    """Controller watchdog."""
    min_rate_hz: int = 10
    """Lowest STATE/COMMAND rate accepted."""
    max_rate_hz: int = 2000
    """Highest STATE/COMMAND rate accepted."""
    seed: int = 0
    """Seed of noise and of a sampled reality."""
    initial_qpos: list[float] | None = None
    """Initial joint positions (default: the model's rest pose, hanging down)."""
    duration_s: float | None = None
    """Stop after this long (default: run until SIGTERM/SIGINT)."""
    reset_on_hello: bool = False
    """Put the plant back to its initial state at every HELLO (for repeated rehearsals)."""
    boot_id: int | None = None
    """Boot id reported in INFO (default: random at each start)."""
    applied_log: str | None = None
    """Record every COMMAND applied to this file: u32 seq + float32 values (little-endian) each."""


@dataclass
class SafetySection:
    soft_start_s: float = 0.2
    """Ramp from the safe command to the full range over this time after enable (0 = off)."""
    max_delta: float | None = None
    """Largest command change per tick, in command units (null = off)."""
    stale_state_ms: float = 50.0
    """Fault when no new STATE arrived for this long."""
    max_consecutive_overruns: int = 10
    """Fault after this many missed deadlines in a row."""


@dataclass
class RecoverSection:
    max: int = 0
    """Recoveries allowed per run from a transient fault (stale state, watchdog, overrun):
    disable, re-handshake, explicit re-enable. 0 = any fault ends the run."""
    backoff_s: float = 0.2
    """Wait this long before the re-handshake."""


@dataclass
class DeployConfig:
    policy: str | None = None
    """Exported ONNX policy (source=policy)."""
    robot: str | None = None
    """Robot spec for source=excitation (and playback, where the log names it)."""
    port: str = "???"
    """Serial device, pseudo-terminal, socket://host:port or loop://."""
    rate_hz: float | None = None
    """Control rate; null = the policy's. Another rate than the policy's is refused."""
    duration_s: float | None = 10.0
    """Run length."""
    log_dir: str = "logs"
    """Folder of the MCAP rollout logs."""
    baud: int = 1_000_000
    """Serial baud (ignored by pseudo-terminals and USB CDC ports, used for the link budget)."""
    check_link_budget: bool = True
    """Refuse a rate the baud cannot carry."""
    handshake_timeout_s: float = 2.0
    """Wait this long for INFO after HELLO."""
    ack_timeout_s: float = 0.5
    """Wait this long for ACK of ENABLE/DISABLE."""
    spin_us: float = 300.0
    """Spin (busy-wait) this long before each deadline, after sleeping."""
    prime: bool = True
    """Run the pure tick stages once before each deadline to warm the CPU caches."""
    realtime_priority: int | None = 50
    """Run the control loop's thread SCHED_FIFO at this priority (1-99) where granted
    (CAP_SYS_NICE: root, or an rtprio limit); else a warning and normal priority. 0 = off."""
    status: bool = True
    """Live status line on stderr."""
    source: str = "policy"
    """Command source: policy, playback or excitation."""
    safety: SafetySection = field(default_factory=SafetySection)
    """Host safety layer."""
    recover: RecoverSection = field(default_factory=RecoverSection)
    """Recovery from transient link faults."""
    log: str | None = None
    """Playback source: the log whose commands are replayed."""
    excitation: Any = None
    """Excitation source settings (configs/excitation/)."""


@dataclass
class ReplayConfig:
    log: Any = "???"
    """Rollout log (MCAP) to replay; a list of logs (log=[A,B]) for fit=[...]."""
    out_dir: str | None = None
    """Report folder (default: beside the first log, named <log>-replay)."""
    policy: str | None = None
    """ONNX policy for the re-check (default: the path in the log; its sha256 must match)."""
    checkpoint: str | None = None
    """Checkpoint for the re-check of a simulated log (default: the one the log names)."""
    model_xml: str | None = None
    """MJCF to replay on (default: the robot spec's, or the one a simulated log names)."""
    reality: str | None = None
    """Reality perturbation YAML to replay on (e.g. a fitted_reality.yaml); not with fit."""
    latency_s: float | None = None
    """Controller command latency, s (null: the reality's, else the log's, else 0)."""
    rmse_horizon_s: float = 0.5
    """RMSE and correlation are also given over the first this many seconds of the run."""
    window_s: float = 0.3
    """Multiple-shooting window: the window RMSE and the fit restart from the log this often."""
    divergence_frac: float = 0.1
    """A sensor has diverged once |sim - logged| exceeds this fraction of its logged range."""
    fit: list[str] = field(default_factory=list)
    """Model parameters to fit (damping, coulomb, armature, motor_gain, pendulum_mass, latency ...)."""
    fit_bound: float = 5.0
    """Fitted multipliers stay within [1/fit_bound, fit_bound] of the nominal values."""
    render: bool = False
    """Render the replay to MP4 (MuJoCo offscreen, headless EGL or OSMesa)."""
    render_fps: int = 30
    """Video frame rate."""
    render_width: int = 320
    """Width of each of the two views (logged, simulated), pixels."""
    render_height: int = 240
    """Video height, pixels."""
    plots: bool = True
    """Write the PNG figures and report.md (false: the JSON line only)."""
    nthread: int = 2
    """MuJoCo rollout threads."""


@dataclass
class FaultDirectionSection:
    """Per-direction overrides of the fault proxy's settings; null = the top-level value."""

    drop: float | None = None
    """Probability per frame that it is dropped."""
    duplicate: float | None = None
    """Probability per frame that it is sent twice."""
    delay: float | None = None
    """Probability per frame that it is held `delay_ms` (later frames overtake it)."""
    reorder: float | None = None
    """Probability per frame that it is swapped with the next frame."""
    corrupt: float | None = None
    """Probability per frame that one of its bytes is altered (never into a 0x00 delimiter)."""
    garbage: float | None = None
    """Probability per frame that a garbage frame (random bytes and a 0x00) goes before it."""
    stall: float | None = None
    """Probability per frame that the line stalls for `stall_ms` from this frame on."""
    bit_error: float | None = None
    """Probability per byte on the wire that one of its bits flips (delimiters included)."""
    delay_ms: float | None = None
    """How long a delayed frame is held."""
    stall_ms: float | None = None
    """How long a stall holds the line (frames are delivered when it ends)."""
    garbage_bytes: int | None = None
    """Largest garbage frame, bytes before its 0x00."""
    stall_at_s: list[float] | None = None
    """Stall the line at these times (s after the host's first byte)."""


@dataclass
class FaultProxyConfig:
    upstream: str = "???"
    """The controller's port (a device, pseudo-terminal or symlink), opened as a client."""
    port_link: str | None = None
    """Place a symlink to the host-side pseudo-terminal here (removed on exit)."""
    seed: int = 0
    """Seed of every random fault decision."""
    baud: int = 1_000_000
    """Baud rate of the upstream port (ignored by pseudo-terminals)."""
    drop: float = 0.0
    """Probability per frame that it is dropped (both directions)."""
    duplicate: float = 0.0
    """Probability per frame that it is sent twice."""
    delay: float = 0.0
    """Probability per frame that it is held `delay_ms` (later frames overtake it)."""
    reorder: float = 0.0
    """Probability per frame that it is swapped with the next frame."""
    corrupt: float = 0.0
    """Probability per frame that one of its bytes is altered (never into a 0x00 delimiter)."""
    garbage: float = 0.0
    """Probability per frame that a garbage frame (random bytes and a 0x00) goes before it."""
    stall: float = 0.0
    """Probability per frame that the line stalls for `stall_ms` from this frame on."""
    bit_error: float = 0.0
    """Probability per byte on the wire that one of its bits flips (delimiters included)."""
    delay_ms: float = 20.0
    """How long a delayed frame is held."""
    stall_ms: float = 200.0
    """How long a stall holds the line (frames are delivered when it ends)."""
    garbage_bytes: int = 32
    """Largest garbage frame, bytes before its 0x00."""
    stall_at_s: list[float] = field(default_factory=list)
    """Stall both directions at these times (s after the host's first byte)."""
    h2c: FaultDirectionSection = field(default_factory=FaultDirectionSection)
    """Overrides for host -> controller."""
    c2h: FaultDirectionSection = field(default_factory=FaultDirectionSection)
    """Overrides for controller -> host."""
    frames: list[str] = field(default_factory=list)
    """Message types the per-frame faults touch (e.g. [STATE, COMMAND]); empty = every frame."""
    start_after_s: float = 0.0
    """No fault before this many seconds after the host's first byte."""
    close_at_s: float | None = None
    """Close the host's line this many seconds after its first byte (a pulled cable)."""
    close_on: list[str] = field(default_factory=list)
    """Close the host's line when the host sends a frame of one of these message types
    (e.g. [DISABLE]: a cable pulled while DISABLE is in flight); the frame is lost."""
    reconnect: bool = True
    """Reopen the upstream port when it goes away (a controller that restarts)."""
    duration_s: float | None = None
    """Stop after this long (default: run until SIGTERM/SIGINT)."""


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="evaluate_schema", node=EvalConfig)
    cs.store(name="export_schema", node=ExportConfig)
    cs.store(name="sim_robot_schema", node=SimRobotConfig)
    cs.store(name="deploy_schema", node=DeployConfig)
    cs.store(name="replay_schema", node=ReplayConfig)
    cs.store(name="faultproxy_schema", node=FaultProxyConfig)
    cs.store(group="env", name="env_schema", node=EnvConfig)
    cs.store(group="ppo", name="ppo_schema", node=PPOConfig)


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
    batch = p.n_steps * e.num_envs
    if batch % p.minibatches:
        raise UserError(
            f"ppo.minibatches={p.minibatches} does not divide the batch "
            f"ppo.n_steps x env.num_envs = {batch}"
        )
