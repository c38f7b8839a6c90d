"""Excitation of position servos: the goal positions moved around a pose, for identifying
a servo arm (the SO-101) from one logged run.

Host floor (used by `sources.make_source` for a robot with position actuators). The
signal (`sources.excitation_signal`, in the actuator's unit) is added to `pose` on every
excited actuator, each shifted in time by its share of the run so that the joints' motions
are uncorrelated (the fit then tells their parameters apart); the other actuators hold the
pose. A goal moves by at most `max_step` a tick (by default the actuator's `rate` per tick,
the envelope the policy's goals keep to; without one the deploy's `safety.max_delta`), so
what is logged is what was asked. The run
starts from the measured pose (the deploy's soft-start origin), moves to the signal's first
goals at that same step and holds them `settle_s`, then plays the signal to the end of the
run. Everything the table reaches is checked against the actuator limits and the deploy's
`safety.max_delta` before enable; nothing is clipped silently.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from ppo_robot.cli import UserError


def servo_source(ex, spec, signal: np.ndarray, rate_hz: float, max_delta: float | None):
    """The source of an excitation of position servos (`signal`: the excitation's one value
    a tick), its log metadata and its table of goals (for the caller's limit check)."""
    if ex.centre is not None:
        raise UserError(
            f"excitation.centre: robot '{spec.name}' drives position servos, which hold their "
            "pose themselves; leave centre out"
        )
    table, step = servo_table(ex, spec, signal, rate_hz, max_delta)
    if max_delta is not None and np.any(step > max_delta + 1e-12):
        raise UserError(
            f"excitation.max_step {float(step.max()):g} is above safety.max_delta "
            f"{max_delta:g} a tick; refused before enable"
        )
    settle = int(round(ex.settle_s * rate_hz))
    run: dict[str, np.ndarray] = {}
    out = np.zeros(spec.n_actuators)

    def source(obs: np.ndarray, sensors: np.ndarray, tick: int) -> np.ndarray:
        if "lead" not in run:  # the first tick: from the measured pose to the first goals
            origin = spec.soft_start_origin(sensors)
            run["lead"] = np.concatenate([approach(origin, table[0], step), table[[0] * settle]])
            run["first"] = np.array(tick)
        lead = run["lead"]
        i = tick - int(run["first"])
        k = i - lead.shape[0]
        out[:] = lead[i] if k < 0 else table[min(k, table.shape[0] - 1)]
        return out

    names = excited(ex, spec)
    meta = {
        "source": "excitation",
        "excitation": asdict(ex),
        "excited": names,
        "max_step": [round(float(x), 9) for x in step],
    }
    return source, meta, table


def excited(ex, spec) -> list[str]:
    """The excited actuators' names (`actuators`, else the one `actuator` index)."""
    names = [a.name for a in spec.actuators]
    if ex.actuators is None:
        if not 0 <= ex.actuator < len(names):
            raise UserError(
                f"excitation.actuator={ex.actuator}: robot '{spec.name}' has {len(names)} actuators"
            )
        return [names[ex.actuator]]
    chosen = list(ex.actuators)
    for n in chosen:
        if n not in names:
            raise UserError(
                f"excitation.actuators: robot '{spec.name}' has no actuator '{n}' ({names})"
            )
    if not chosen or len(set(chosen)) != len(chosen):
        raise UserError("excitation.actuators: give each excited actuator once")
    return chosen


def servo_table(
    ex, spec, signal: np.ndarray, rate_hz: float, max_delta: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(ticks, nu) goals of the signal part of the run, and (nu,) the most a goal moves a
    tick (module docstring)."""
    names = [a.name for a in spec.actuators]
    pose = spec.safe_command.astype(np.float64).copy()
    for n, v in (ex.pose or {}).items():
        if n not in names:
            raise UserError(f"excitation.pose: robot '{spec.name}' has no actuator '{n}' ({names})")
        pose[names.index(n)] = float(v)
    step = np.array([_step(ex, a, rate_hz, max_delta) for a in spec.actuators])
    table = np.tile(pose, (signal.size, 1))
    chosen = excited(ex, spec)
    for k, n in enumerate(chosen):
        shift = (k * signal.size) // len(chosen)
        table[:, names.index(n)] += np.roll(signal, -shift)  # the offset in it
    return slew(table, step), step


def _step(ex, a, rate_hz: float, max_delta: float | None) -> float:
    """`max_step`, else the actuator's rate a tick, else the deploy's max_delta, else none."""
    if ex.max_step is not None:
        if not ex.max_step > 0:
            raise UserError(f"excitation.max_step must be > 0, got {ex.max_step}")
        return float(ex.max_step)
    if a.rate:
        return float(a.rate) / rate_hz
    return float(max_delta) if max_delta is not None else np.inf


def slew(table: np.ndarray, step: np.ndarray) -> np.ndarray:
    """`table` with each column's change per row held to `step` (from its first row)."""
    if not np.any(np.isfinite(step)):
        return table
    out = table.copy()
    for k in range(1, out.shape[0]):
        out[k] = out[k - 1] + np.clip(table[k] - out[k - 1], -step, step)
    return out


def approach(origin: np.ndarray, goal: np.ndarray, step: np.ndarray) -> np.ndarray:
    """(m, nu) goals from `origin` to `goal` in a straight line, each joint moving at most
    `step` a tick (m = 0 where they are already there)."""
    gap = np.abs(goal - origin)
    finite = np.isfinite(step)
    ticks = np.where(finite, gap / np.where(finite, step, 1.0), 0.0)
    m = int(np.ceil(float(ticks.max()) - 1e-9)) if ticks.size else 0
    if m <= 0:
        return np.zeros((0, origin.size))
    f = np.arange(1, m + 1)[:, None] / m
    return origin + f * (goal - origin)
