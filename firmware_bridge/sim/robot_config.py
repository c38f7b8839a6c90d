"""The schema of `python -m firmware_bridge.sim_robot` (configs/sim_robot.yaml): registered
as `sim_robot_schema`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
    """Controller watchdog (a framed robot; a servo has none)."""
    min_rate_hz: int = 10
    """Lowest STATE/COMMAND rate accepted."""
    max_rate_hz: int = 2000
    """Highest STATE/COMMAND rate accepted."""
    seed: int = 0
    """Seed of noise and of a sampled reality."""
    initial_qpos: list[float] | None = None
    """Initial joint positions (default: the model's qpos0: the Furuta hanging down, the
    SO-101 at home, every joint at 0 rad)."""
    duration_s: float | None = None
    """Stop after this long (default: run until SIGTERM/SIGINT)."""
    reset_on_hello: bool = False
    """Put the plant back to its initial state at every HELLO (for repeated rehearsals)."""
    boot_id: int | None = None
    """Boot id reported in INFO (default: random at each start)."""
    applied_log: str | None = None
    """Record every COMMAND applied to this file: u32 seq + float32 values (little-endian) each
    (a servo-bus robot: every change of the servos' goals or torque enables, NaN = limp)."""
    # -- a servo-bus robot (robot.yaml `transport: feetech`) only: its rehearsal faults
    absent_ids: list[int] = field(default_factory=list)
    """Servo ids that never answer (unpowered, unplugged, or another id): their joints are limp."""
    error_ids: Any = None
    """Servo id -> error bit set in its status from the start (voltage, angle_sensor,
    overheat, overcurrent, overload), e.g. `error_ids={3:overload}`: every answer of that
    servo carries it. null = none. (Typed Any so that a dict override replaces the default;
    checked by sim/bus_robot.py.)"""
    error_after_s: float | None = None
    """error_ids' bits appear this long (physics seconds) after the first torque enable
    instead of from the start: a servo that overloads or overheats mid-run. null = from
    the start."""
    bus_baud: int | None = None
    """The servos' baud rate; null = the robot's (robot.yaml `baud`). Another rate than the
    host's means nothing it sends parses."""
