"""Command sources for deploy other than the policy: playback of a logged run, and
excitation signals for identifying the real robot (chirp, steps, PRBS, multisine).

A source is a function (obs, sensors, tick) -> command in actuator units. Every source goes
through the same fixed-rate loop, safety layer, handshake checks and MCAP log as the policy;
the log records which source drove the run. Anything that would exceed the actuator limits
is refused before enable, naming the limit (never silently clipped).

An open-loop excitation of an effort actuator makes a joint with no spring drift: the
Furuta's arm leaves its 2 rad travel within seconds under any of the shipped signals. An
excitation can therefore hold one sensor near a target by a bounded PD term added to the
signal (`centre`), which makes it a closed-loop experiment; identification fits the
commands that were really sent (the log's), so it does not need to know the feedback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ppo_robot.cli import UserError

Source = Callable[[np.ndarray, np.ndarray, int], np.ndarray]
SIGNALS = ("chirp", "steps", "prbs", "multisine")


@dataclass(frozen=True)
class Centring:
    """A bounded PD term that keeps a drifting joint inside its travel during an excitation:
    `clip(kp * (target - sensor) - kd * rate_sensor, -limit, limit)`, added to the signal."""

    sensor: str
    """The sensor held near `target` (e.g. arm_angle)."""
    rate_sensor: str | None = None
    """Its rate (e.g. arm_velocity), for the damping term; None = no damping term."""
    target: float = 0.0
    """Where the sensor is held, in its units."""
    kp: float = 0.0
    """Actuator units per sensor unit."""
    kd: float = 0.0
    """Actuator units per unit of the rate sensor."""
    limit: float = 0.0
    """Largest |feedback| in actuator units; signal +- limit must stay inside the actuator
    limits (checked before enable)."""


@dataclass(frozen=True)
class Excitation:
    signal: str = "chirp"
    """chirp (linear frequency sweep), steps (random levels), prbs (pseudo-random binary
    sequence) or multisine (Schroeder-phased sum of sines)."""
    amplitude: float = 3.0
    """Peak deviation from the offset, in the actuator's units."""
    offset: float = 0.0
    """Centre of the signal, in the actuator's units."""
    f0_hz: float = 0.2
    """Lowest frequency (chirp start, multisine lowest)."""
    f1_hz: float = 5.0
    """Highest frequency (chirp end, multisine highest)."""
    hold_s: float = 0.25
    """Level duration for steps; bit duration for prbs."""
    n_sines: int = 12
    """Number of sines in a multisine."""
    actuator: int = 0
    """Which actuator is excited; the others hold their safe command."""
    seed: int = 0
    """Seed of random levels (steps) and of the PRBS register."""
    centre: Centring | None = None
    """Hold a drifting joint inside its travel with a bounded PD term (None = open loop)."""
    actuators: list[str] | None = None
    """Position servos: the actuators excited at once, by name (each gets the signal shifted
    in time by its share of the run, so that their motions are uncorrelated); None =
    `actuator` alone. The signal is around `pose` (`offset` added), a goal moves by at most
    `max_step` a tick, and the run starts by moving from the measured pose to the signal's
    first goals and holding them `settle_s` (firmware_bridge/host/servo_excitation.py)."""
    pose: dict[str, float] | None = None
    """Position servos: the pose the signal is centred on and the other joints hold, per
    actuator name in its unit; an actuator left out: its safe command (None = all)."""
    max_step: float | None = None
    """Position servos: most a goal moves in one tick, in the actuator's unit; None = the
    actuator's `rate` / the tick rate (the policy's own envelope), else safety.max_delta."""
    settle_s: float = 0.5
    """Position servos: time held at the signal's first goals before the signal starts."""


def excitation_signal(ex: Excitation, rate_hz: float, duration_s: float) -> np.ndarray:
    """The whole signal, one value per tick, in actuator units (offset included)."""
    n = int(round(duration_s * rate_hz))
    t = np.arange(n) / rate_hz
    a = ex.amplitude
    if ex.signal == "chirp":
        T = max(duration_s, 1e-9)
        phase = 2 * np.pi * (ex.f0_hz * t + (ex.f1_hz - ex.f0_hz) * t**2 / (2 * T))
        u = a * np.sin(phase)
    elif ex.signal == "steps":
        rng = np.random.default_rng(ex.seed)
        k = np.floor(t / ex.hold_s + 1e-9).astype(int)
        levels = rng.uniform(-a, a, k.max() + 1 if n else 1)
        u = levels[k] if n else np.zeros(0)
    elif ex.signal == "prbs":
        from scipy.signal import max_len_seq

        k = np.floor(t / ex.hold_s + 1e-9).astype(int)
        nbits = max(4, int(np.ceil(np.log2(k.max() + 2))) if n else 4)
        state = np.random.default_rng(ex.seed).integers(0, 2, nbits)
        state[0] = 1  # a register of zeros never leaves zero
        seq = max_len_seq(nbits, state=state)[0]
        u = a * (2.0 * seq[k % seq.size] - 1.0) if n else np.zeros(0)
    elif ex.signal == "multisine":
        f = np.geomspace(ex.f0_hz, ex.f1_hz, ex.n_sines)
        j = np.arange(1, ex.n_sines + 1)
        phases = -np.pi * j * (j - 1) / ex.n_sines  # Schroeder: low crest factor
        u = np.sin(2 * np.pi * f[None, :] * t[:, None] + phases[None, :]).sum(axis=1)
        peak = np.max(np.abs(u)) if n else 1.0
        u = a * u / peak
    else:
        raise UserError(f"excitation.signal: unknown '{ex.signal}' (one of {SIGNALS})")
    return ex.offset + u


def parse_excitation(cfg: Any) -> Excitation:
    from omegaconf import OmegaConf

    # deploy's typed config holds it as a dict; a composed config as a DictConfig
    d = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg
    d = {k: v for k, v in (d or {}).items() if k != "name"}
    unknown = set(d) - set(Excitation.__dataclass_fields__)
    if unknown:
        raise UserError(f"excitation: unknown key '{sorted(unknown)[0]}'")
    centre = d.pop("centre", None)
    if centre is not None:
        bad = set(centre) - set(Centring.__dataclass_fields__)
        if bad or "sensor" not in centre:
            what = f"unknown key '{sorted(bad)[0]}'" if bad else "needs 'sensor'"
            raise UserError(f"excitation.centre: {what}")
        d["centre"] = Centring(**centre)
    ex = Excitation(**d)
    if ex.signal not in SIGNALS:
        raise UserError(f"excitation.signal: unknown '{ex.signal}' (one of {SIGNALS})")
    if ex.amplitude < 0:
        raise UserError(f"excitation.amplitude must be >= 0, got {ex.amplitude}")
    if not 0 < ex.f0_hz <= ex.f1_hz:
        raise UserError(f"excitation: need 0 < f0_hz <= f1_hz, got {ex.f0_hz}, {ex.f1_hz}")
    if ex.hold_s <= 0 or ex.n_sines < 1:
        raise UserError("excitation: hold_s must be > 0 and n_sines >= 1")
    return ex


def check_limits(spec, values: np.ndarray, what: str) -> None:
    """Refuse (before enable) anything outside the actuator limits, naming the limit."""
    for i, a in enumerate(spec.actuators):
        col = values[:, i]
        if col.size and (col.max() > a.high + 1e-9 or col.min() < a.low - 1e-9):
            raise UserError(
                f"{what} reaches [{col.min():.4g}, {col.max():.4g}] {a.unit} on actuator '{a.name}', "
                f"outside its limits [{a.low:g}, {a.high:g}] {a.unit}; refused before enable"
            )


def make_source(cfg: Any, spec) -> tuple[Source, dict[str, Any]]:
    """The source named by cfg.source, checked against the robot spec and its limits."""
    rate = float(cfg.rate_hz or spec.control_hz)
    n = spec.n_actuators
    if cfg.source == "excitation":
        ex = parse_excitation(cfg.excitation)
        if any(a.kind == "position" for a in spec.actuators):
            from firmware_bridge.host.servo_excitation import servo_source

            signal = excitation_signal(ex, rate, float(cfg.duration_s))
            source, meta, table = servo_source(ex, spec, signal, rate, _max_delta(cfg))
            check_limits(spec, table, f"excitation '{ex.signal}'")
            return source, meta
        if not 0 <= ex.actuator < n:
            raise UserError(
                f"excitation.actuator={ex.actuator}: robot '{spec.name}' has {n} actuators"
            )
        sig = excitation_signal(ex, rate, float(cfg.duration_s))
        table = np.tile(spec.safe_command, (sig.size, 1))
        table[:, ex.actuator] = sig
        check_limits(spec, table, f"excitation '{ex.signal}'")
        meta = {"source": "excitation", "excitation": asdict(ex)}
        if ex.centre is not None:
            return _centred(spec, ex, table), meta
    elif cfg.source == "playback":
        table, meta = _playback_table(cfg, spec, rate)
    else:
        raise UserError(f"source: unknown '{cfg.source}' (policy, playback or excitation)")
    out = np.zeros(n)
    last = table.shape[0] - 1

    def source(obs: np.ndarray, sensors: np.ndarray, tick: int) -> np.ndarray:
        out[:] = table[min(tick, last)]
        return out

    return source, meta


def _max_delta(cfg: Any) -> float | None:
    """The deploy's safety.max_delta (None where not set)."""
    value = getattr(getattr(cfg, "safety", None), "max_delta", None)
    return None if value is None else float(value)


def _centred(spec, ex: Excitation, table: np.ndarray) -> Source:
    """The excitation table plus the bounded PD term of `ex.centre` on its actuator."""
    c = ex.centre
    names = [s.name for s in spec.sensors]
    for key in ("sensor", "rate_sensor"):
        name = getattr(c, key)
        if name is not None and name not in names:
            raise UserError(f"excitation.centre.{key}: robot '{spec.name}' has no sensor '{name}'")
    if c.limit < 0 or c.kp < 0 or c.kd < 0:
        raise UserError("excitation.centre: kp, kd and limit must be >= 0")
    wide = np.concatenate([table, table])
    wide[: len(table), ex.actuator] += c.limit
    wide[len(table) :, ex.actuator] -= c.limit
    check_limits(spec, wide, f"excitation '{ex.signal}' with its centring (+-{c.limit:g})")
    i = names.index(c.sensor)
    j = names.index(c.rate_sensor) if c.rate_sensor is not None else None
    out = np.zeros(spec.n_actuators)
    last = table.shape[0] - 1

    def source(obs: np.ndarray, sensors: np.ndarray, tick: int) -> np.ndarray:
        fb = c.kp * (c.target - sensors[i]) - (c.kd * sensors[j] if j is not None else 0.0)
        out[:] = table[min(tick, last)]
        out[ex.actuator] += min(max(fb, -c.limit), c.limit)
        return out

    return source


def _playback_table(cfg: Any, spec, rate: float) -> tuple[np.ndarray, dict[str, Any]]:
    """The logged commands resampled onto this run's ticks (zero-order hold at their
    logged times relative to enable)."""
    from firmware_bridge.logs.rollout_log import LogError, read_log

    if not cfg.log:
        raise UserError("source=playback needs log=PATH")
    try:
        log = read_log(cfg.log)
    except LogError as e:
        raise UserError(str(e)) from None
    run = log.run
    if run.get("robot") != spec.name:
        raise UserError(
            f"playback log {cfg.log} is from robot '{run.get('robot')}', not '{spec.name}'"
        )
    cmds = log.topic("/command")
    if not cmds:
        raise UserError(f"playback log {cfg.log} has no commands")
    values = np.array([c["values"] for c in cmds], dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != spec.n_actuators:
        got = values.shape[1] if values.ndim == 2 else "?"
        raise UserError(
            f"playback log {cfg.log} has {got} actuators per command, robot '{spec.name}' has {spec.n_actuators}"
        )
    # Times relative to enable: each command's tick on the logged run's deadline grid.
    logged_rate = float(run.get("rate_hz") or rate)
    t_log = np.array([c["tick"] for c in cmds], dtype=np.float64) / logged_rate
    n = int(round(float(cfg.duration_s) * rate))
    t = np.arange(n) / rate
    idx = np.clip(np.searchsorted(t_log, t + 1e-9, side="right") - 1, 0, len(t_log) - 1)
    table = values[idx]
    check_limits(spec, table, f"playback log {Path(cfg.log).name}")
    return table, {"source": "playback", "playback_log": str(Path(cfg.log).resolve())}


def task_goal(cfg: Any, spec) -> np.ndarray | None:
    """The run's goal for a goal-directed task (None for a task without one): `goal=` as
    given, or drawn from the task with `goal_seed` (the same draw every call)."""
    if not spec.goal_dim:
        if cfg.goal is not None:
            raise UserError(f"goal=: task '{spec.task_name}' of robot '{spec.name}' takes no goal")
        return None
    if cfg.goal is None:
        rng = np.random.default_rng(int(cfg.goal_seed or 0))
        return spec.sample_goal(spec.load_model(), rng, 1)[0]
    try:
        goal = np.asarray(list(cfg.goal), dtype=np.float64)
    except (TypeError, ValueError):
        goal = np.zeros(0)
    if goal.shape != (spec.goal_dim,) or not np.all(np.isfinite(goal)):
        raise UserError(
            f"goal={cfg.goal}: task '{spec.task_name}' of robot '{spec.name}' takes "
            f"{spec.goal_dim} numbers ({', '.join(spec.goal_names)})"
        )
    return goal
