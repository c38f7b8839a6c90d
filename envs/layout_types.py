"""The building blocks of a robot layout: a `Sensor` (one value of the controller's STATE),
an `Actuator` (one value of the host's COMMAND), and `SpecError` for a spec or MJCF that
does not fit together. `envs.spec.RobotSpec` is made of them."""

from __future__ import annotations

from dataclasses import asdict, dataclass


class SpecError(ValueError):
    """A robot spec, or an MJCF model, that does not fit together."""


@dataclass(frozen=True)
class Sensor:
    """One value in the controller's STATE message."""

    name: str
    """Name in the STATE layout; also the MuJoCo sensor that simulates it."""
    unit: str
    """Physical unit, e.g. 'rad', 'rad/s'."""
    low: float
    """Lowest value that is safe; outside [low, high] the robot is out of its envelope."""
    high: float
    """Highest value that is safe."""
    resolution: float = 0.0
    """Quantum of the reading (an encoder's 2*pi/counts), 0 for a continuous value."""
    source: str | None = None
    """MuJoCo sensor that simulates it; None = `name`."""
    component: int | None = None
    """Index into a vector sensor's values (a gyro's 0..2); None = a scalar sensor."""
    bus_id: int | None = None
    """On a servo-bus robot: the id of the servo that reports it."""
    register: str | None = None
    """On a servo-bus robot: which of the servo's present values it is (one of
    BUS_REGISTERS); physical value = counts (from the calibrated middle, for a
    position) x `resolution`."""

    def __post_init__(self) -> None:
        if (self.bus_id is None) != (self.register is None):
            raise SpecError(f"sensor '{self.name}': bus_id and register go together")
        if self.register is not None and self.register not in BUS_REGISTERS:
            raise SpecError(
                f"sensor '{self.name}': register '{self.register}' is not one of {BUS_REGISTERS}"
            )
        if self.register is not None and self.resolution <= 0:
            raise SpecError(
                f"sensor '{self.name}': a bus reading needs its resolution (unit per count)"
            )

    @property
    def mujoco_name(self) -> str:
        return self.source if self.source is not None else self.name


@dataclass(frozen=True)
class Actuator:
    """One value in the host's COMMAND message."""

    name: str
    """Name in the COMMAND layout; also the MuJoCo actuator that simulates it."""
    unit: str
    """Physical unit of the command, e.g. 'V' (motor voltage), 'rad' (servo target)."""
    low: float
    """Lowest command the controller accepts."""
    high: float
    """Highest command the controller accepts."""
    kind: str = "effort"
    """'effort' (voltage, current or torque) or 'position' (servo target with PD gains)."""
    safe: float = 0.0
    """Command of the safe state (zero voltage; for servos the hold pose, or torque-off)."""
    center: float | None = None
    """Command at policy action 0 (default pose for servos); None = middle of [low, high]."""
    half_range: float | None = None
    """Command change for policy action +-1; None = half of [low, high]."""
    kp: float = 0.0
    """Position gain the servo runs with (position actuators only)."""
    kd: float = 0.0
    """Damping gain the servo runs with (position actuators only)."""
    safe_mode: str = "value"
    """Safe state: 'value' = command `safe`; 'hold' = hold the measured position (reading
    of `position_sensor`); 'off' = torque off (NaN inside the controller, never on the wire)."""
    position_sensor: str | None = None
    """Layout sensor measuring the joint it drives; needed by 'hold' and by soft start of a
    position actuator (it ramps from the measured pose)."""
    rate: float | None = None
    """Most the command may move per second (unit/s): the action then steers the command
    from its last value (`envs.action_map`, incremental); None = the absolute map."""
    bus_id: int | None = None
    """Id of the servo on its bus, for a robot driven over a servo bus (robot.yaml
    `transport`); None for a robot behind our controller."""

    def __post_init__(self) -> None:
        if self.safe_mode not in SAFE_MODES:
            raise SpecError(
                f"actuator '{self.name}': safe_mode '{self.safe_mode}' is not one of {SAFE_MODES}"
            )
        if self.rate is not None and not self.rate > 0:
            raise SpecError(f"actuator '{self.name}': rate must be > 0, got {self.rate}")
        if self.safe_mode == "hold" and self.kind != "position":
            raise SpecError(f"actuator '{self.name}': safe_mode 'hold' needs kind='position'")
        if self.kind == "position" and not self.position_sensor:
            raise SpecError(
                f"actuator '{self.name}': a position actuator needs its position_sensor "
                "(safe_mode 'hold' and the soft start read it)"
            )


SAFE_MODES = ("value", "hold", "off")
BUS_REGISTERS = ("position", "speed", "load")
"""What a position servo on a bus reports (its present position, speed and load)."""
_LAYOUT_DEFAULTS = {
    "source": None,
    "component": None,
    "safe_mode": "value",
    "position_sensor": None,
    "bus_id": None,
    "register": None,
    "rate": None,
}
"""Fields left out of `layout()` at these values, so older layouts keep their hash."""


def _layout_entry(entry: Sensor | Actuator) -> dict:
    d = asdict(entry)
    return {k: v for k, v in d.items() if k not in _LAYOUT_DEFAULTS or v != _LAYOUT_DEFAULTS[k]}
