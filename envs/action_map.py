"""The action mapping: policy output (nominally in [-1, 1]) -> command in physical units.

Per actuator one of two maps, both clipped to the actuator's [low, high]:

- absolute: command = offset + scale * a (a motor voltage; a servo's target pose as a
  point of its range);
- incremental (an actuator with a `rate`): command = last command + step * a, with
  step = rate / control_hz, the most the command moves in one tick. A position servo's
  policy then steers its target instead of jumping it across the range, which is how real
  servos are driven smoothly and what keeps a reach-and-hold policy still at the goal.

An incremental map needs the last command, so its task observes it: the observation holds
`<actuator>_last` = `normalized(last command)`, and the exported ONNX graph reads it from
there (`last_from_obs`) so host and training apply one map. `RobotSpec.action_map` builds
this from the layout; the training engine, export, the simulated episodes and replay's
re-check all map through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.layout_types import SpecError


@dataclass(frozen=True, eq=False)
class ActionMap:
    """One robot's action mapping at one control rate (arrays per actuator)."""

    offset: np.ndarray
    """Command at action 0 (absolute); the centre the observation normalizes around."""
    scale: np.ndarray
    """Command change per unit of action (absolute); the observation's normalizing span."""
    step: np.ndarray
    """Command change per unit of action per tick (incremental); 0 = absolute."""
    low: np.ndarray
    high: np.ndarray
    last_obs: np.ndarray
    """Per actuator, the observation index of its `<name>_last` entry; -1 where none."""

    @property
    def incremental(self) -> np.ndarray:
        """(n_actuators,) bool: the actuator's command moves from its last value."""
        return self.step > 0

    @property
    def any_incremental(self) -> bool:
        return bool(np.any(self.step > 0))

    @property
    def gain(self) -> np.ndarray:
        """Command change per unit of action, per actuator: `step` or `scale`."""
        return np.where(self.incremental, self.step, self.scale)

    def to_command(self, action: np.ndarray, last_command: np.ndarray | None = None) -> np.ndarray:
        """(N, n_actuators) actions -> commands; `last_command` (N, n_actuators) is
        required when some actuator is incremental."""
        a = np.clip(action, -1.0, 1.0)
        if self.any_incremental:
            if last_command is None:
                raise SpecError("an incremental action map needs the last command")
            base = np.where(self.incremental, last_command, self.offset)
        else:
            base = self.offset
        return np.clip(base + self.gain * a, self.low, self.high)

    def normalized(self, command: np.ndarray) -> np.ndarray:
        """Commands -> the observation's `<actuator>_last` values, (command - offset) / scale."""
        return (command - self.offset) / self.scale

    def last_from_obs(self, obs: np.ndarray) -> np.ndarray:
        """Observations (N, obs_dim) -> the last commands they hold (incremental
        actuators; the others' entries are `offset`, which their map ignores)."""
        at = np.where(self.last_obs >= 0, self.last_obs, 0)
        raw = np.asarray(obs, np.float64)[..., at] * self.scale + self.offset
        return np.where(self.last_obs >= 0, raw, self.offset)

    def command_for(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        """The command the exported graph computes for observations and actions."""
        return self.to_command(action, self.last_from_obs(obs) if self.any_incremental else None)


def build_action_map(spec) -> ActionMap:
    """The `RobotSpec`'s map: absolute offset/scale from `center`/`half_range` (default:
    the middle and half of [low, high]), incremental step from `rate` / control_hz; an
    incremental actuator's `<name>_last` must be in the task's observation."""
    acts = spec.actuators
    low = np.array([a.low for a in acts], dtype=np.float64)
    high = np.array([a.high for a in acts], dtype=np.float64)
    offset = np.array([0.5 * (a.low + a.high) if a.center is None else a.center for a in acts])
    scale = np.array(
        [0.5 * (a.high - a.low) if a.half_range is None else a.half_range for a in acts]
    )
    step = np.array([0.0 if a.rate is None else a.rate / spec.control_hz for a in acts])
    names = list(spec.obs_names) if spec.task is not None else []
    last_obs = np.array(
        [names.index(f"{a.name}_last") if f"{a.name}_last" in names else -1 for a in acts]
    )
    missing = [a.name for a, s, j in zip(acts, step, last_obs, strict=True) if s > 0 and j < 0]
    if missing and spec.task is not None:
        raise SpecError(
            f"robot '{spec.name}': incremental actuators {missing} need '<name>_last' in the "
            f"observation of task '{spec.task.name}' (the exported graph reads the last command there)"
        )
    return ActionMap(offset, scale, step, low, high, last_obs.astype(np.int64))
