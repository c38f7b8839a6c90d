"""The host's safety layer: every STATE is checked and every command passes through it
before it reaches the wire.

STATE check: every reading finite and inside its sensor's safe envelope [low, high] (the
robot spec's, the same numbers training terminates on and the controller raises LIMIT on),
else a `sensor_envelope` fault naming the sensor and the value.

Command steps, in order: NaN/inf guard (a non-finite policy output is a fault, never a command),
soft-start ramp after enable (the allowed distance from the ramp's origin grows from 0 to
the full range over `soft_start_s`; the origin is the safe command, or for a position
actuator with a position sensor its measured position at the first STATE of the run, so a
servo does not jump), maximum change per tick, clamp to the robot's limits.
`safe_state(sensors)` is the safe command for the latest readings (the spec's
`safe_command_for`: fixed value, hold the measured pose, or NaN = torque off).
Stale-state and overrun limits are checked by the loop with the figures configured here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


class SafetyFault(RuntimeError):
    """A condition that must stop the robot: the loop disables and exits non-zero."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class SafetyConfig:
    soft_start_s: float = 0.2
    """Ramp from the safe command to full range over this time after enable (0 = off)."""
    max_delta: float | None = None
    """Largest command change per tick, in command units (null = off)."""
    stale_state_ms: float = 50.0
    """Fault when no new STATE arrived for this long."""
    max_consecutive_overruns: int = 10
    """Fault after this many missed deadlines in a row."""


class SafetyLayer:
    def __init__(
        self,
        low: np.ndarray,
        high: np.ndarray,
        safe: np.ndarray,
        cfg: SafetyConfig,
        sensors: tuple = (),
        safe_for: Callable[[np.ndarray], np.ndarray] | None = None,
        origin_for: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        """`low`, `high`, `safe`: the command limits and safe command; `sensors`: the robot
        spec's `Sensor` entries, whose [low, high] every STATE is checked against;
        `safe_for` / `origin_for`: readings -> safe command / soft-start origin (the spec's
        `safe_command_for` / `soft_start_origin`; None = `safe` for both)."""
        self.low = np.asarray(low, dtype=np.float64)
        self.high = np.asarray(high, dtype=np.float64)
        self.safe = np.asarray(safe, dtype=np.float64)
        self.cfg = cfg
        self.last = self.safe.copy()
        self.out = self.safe.copy()
        self._scratch = self.safe.copy()
        self.limited_ticks = 0
        self.sensors = tuple(sensors)
        self.sensor_low = np.array([s.low for s in self.sensors], dtype=np.float64)
        self.sensor_high = np.array([s.high for s in self.sensors], dtype=np.float64)
        self._ok = np.zeros(len(self.sensors), dtype=bool)
        self._ok_high = np.zeros(len(self.sensors), dtype=bool)
        self.safe_for, self.origin_for = safe_for, origin_for
        self.origin = self.safe.copy()
        self._ramp_low, self._ramp_high = self.low - self.safe, self.high - self.safe

    @classmethod
    def for_spec(cls, spec, cfg: SafetyConfig) -> SafetyLayer:
        """The safety layer of a robot spec: its command limits, safe command, sensors and
        the spec's safe command and soft-start origin for given readings."""
        return cls(
            spec.command_low,
            spec.command_high,
            spec.safe_command,
            cfg,
            spec.sensors,
            spec.safe_command_for,
            spec.soft_start_origin,
        )

    def safe_state(self, sensors: np.ndarray | None) -> np.ndarray:
        """The safe command for the latest readings (None: none yet -> the fixed `safe`)."""
        if self.safe_for is None or sensors is None:
            return self.safe.copy()
        return np.asarray(self.safe_for(sensors), dtype=np.float64)

    def begin(self, sensors: np.ndarray) -> None:
        """Start of a run (after enable), on its first STATE: the soft-start ramp and the
        per-tick change limit start from the measured pose (see `origin_for`)."""
        if self.origin_for is not None:
            self.origin[:] = self.origin_for(sensors)
        o = self.origin
        self._ramp_low[:] = self.low - o
        self._ramp_high[:] = self.high - o
        self.last[:] = o

    def check_state(self, sensors: np.ndarray) -> None:
        """Raise a `sensor_envelope` fault unless every reading is finite and inside its
        sensor's [low, high] (a NaN fails both comparisons). No allocation when it passes."""
        if not self.sensors:
            return
        ok = np.greater_equal(sensors, self.sensor_low, out=self._ok)
        np.logical_and(ok, np.less_equal(sensors, self.sensor_high, out=self._ok_high), out=ok)
        if ok.all():
            return
        i = int(np.argmin(ok))
        s, v = self.sensors[i], float(sensors[i])
        raise SafetyFault(
            "sensor_envelope",
            f"sensor {s.name} = {v:g} {s.unit} is outside its safe envelope "
            f"[{s.low:g}, {s.high:g}]",
        )

    def reset(self) -> None:
        self.origin[:] = self.safe
        self._ramp_low[:] = self.low - self.safe
        self._ramp_high[:] = self.high - self.safe
        self.last[:] = self.safe

    def filter(
        self, action: np.ndarray, t_since_enable: float, commit: bool = True
    ) -> tuple[np.ndarray, bool]:
        """Policy output (command units) -> the command to send, and whether it was limited.

        `commit=False` computes the same into a scratch buffer and changes no state (the
        loop uses it to warm the CPU caches before a deadline)."""
        if not np.all(np.isfinite(action)):
            if not commit:
                return self._scratch, False
            raise SafetyFault("nan", f"policy output is not finite: {np.asarray(action).tolist()}")
        out = self.out if commit else self._scratch
        np.clip(action, self.low, self.high, out=out)
        cfg = self.cfg
        if cfg.soft_start_s > 0 and t_since_enable < cfg.soft_start_s:
            frac = max(0.0, t_since_enable) / cfg.soft_start_s
            o = self.origin
            np.clip(out, o + frac * self._ramp_low, o + frac * self._ramp_high, out=out)
        if cfg.max_delta is not None:
            np.clip(out, self.last - cfg.max_delta, self.last + cfg.max_delta, out=out)
        limited = bool(np.any(out != action))
        if commit:
            self.limited_ticks += limited
            self.last[:] = out
        return out, limited
