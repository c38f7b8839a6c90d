"""The host's safety layer: every STATE is checked and every command passes through it
before it reaches the wire.

STATE check: every reading finite and inside its sensor's safe envelope [low, high] (the
robot spec's, the same numbers training terminates on and the controller raises LIMIT on),
else a `sensor_envelope` fault naming the sensor and the value.

Command steps, in order: NaN/inf guard (a non-finite policy output is a fault, never a command),
soft-start ramp after enable (the allowed distance from the safe command grows from 0 to
the full range over `soft_start_s`), maximum change per tick, clamp to the robot's limits.
Stale-state and overrun limits are checked by the loop with the figures configured here.
"""

from __future__ import annotations

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
    ) -> None:
        """`low`, `high`, `safe`: the command limits and safe command; `sensors`: the robot
        spec's `Sensor` entries, whose [low, high] every STATE is checked against."""
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

    @classmethod
    def for_spec(cls, spec, cfg: SafetyConfig) -> SafetyLayer:
        """The safety layer of a robot spec: its command limits, safe command and sensors."""
        return cls(spec.command_low, spec.command_high, spec.safe_command, cfg, spec.sensors)

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
            np.clip(
                out,
                self.safe + frac * (self.low - self.safe),
                self.safe + frac * (self.high - self.safe),
                out=out,
            )
        if cfg.max_delta is not None:
            np.clip(out, self.last - cfg.max_delta, self.last + cfg.max_delta, out=out)
        limited = bool(np.any(out != action))
        if commit:
            self.limited_ticks += limited
            self.last[:] = out
        return out, limited
