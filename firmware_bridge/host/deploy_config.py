"""The schema of `python -m firmware_bridge.deploy` (configs/deploy.yaml), registered as
`deploy_schema` by firmware_bridge.host.deploy. Its `safety` section is the safety layer's
own `SafetyConfig`; `calibration` and `bus` are a servo-bus robot's (host.bus_deploy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from firmware_bridge.host.safety import SafetyConfig
from ppo_robot.errors import UserError


@dataclass
class RecoverSection:
    max: int = 0
    """Recoveries allowed per run from a transient fault (stale state, watchdog, overrun):
    disable, re-handshake, explicit re-enable. 0 = any fault ends the run."""
    backoff_s: float = 0.2
    """Wait this long before the re-handshake."""


@dataclass
class BusSection:
    """A robot on a servo bus (robot.yaml `transport: feetech`): the bus, the servos'
    protection and the safe state. Torques are in the servos' unit, 0.1 % of stall torque
    (1000 = full)."""

    baud: int | None = None
    """The servos' baud rate; null = the robot's (robot.yaml `baud`)."""
    adapter_latency_us: float = 1000.0
    """The USB adapter's round trip, paid once per sync read: 1000 us is a USB full-speed
    adapter's 1 ms frame (a CH340 or an FTDI chip at latency_timer 1). Enters the bus
    budget printed at connect; a rate over the budget is refused."""
    read_timeout_ms: float = 10.0
    """A sync read without a valid status packet from every servo within this (plus the
    answers' time on the wire) has failed: counted, and that tick gets no new reading, so
    `safety.stale_state_ms` ends the run after a few in a row."""
    setup_timeout_ms: float = 100.0
    """The same for every transaction outside the loop (connect, prepare, the safe stop),
    where waiting longer costs nothing."""
    torque_limit: int = 1000
    """Torque limit written and read back before torque on (1000: the full torque the model
    was trained with; lower it for first runs)."""
    hold_torque_limit: int = 300
    """The safe state's torque limit: the present pose is held this strongly (30 %: the
    SO-101's shoulder needs about 20 % to carry the forearm) for `hold_s`, then torque off."""
    hold_s: float = 1.0
    """How long the safe state holds the pose before torque off (0 = torque off at once)."""
    overload_torque_pct: int = 80
    """Overload protection: a load above this (% of stall torque) for `overload_time_ms`
    trips it (the STS3215's OVERLOAD_TORQUE, factory 80). Written to EEPROM before enable
    only where a servo differs, and read back."""
    overload_time_ms: int = 2000
    """How long an overload may last before protection trips (PROTECTION_TIME, in 10 ms;
    factory 2000 ms). The servo then sets its overload bit, which ends the run."""
    protective_torque_pct: int = 20
    """The torque a tripped servo is left with (PROTECTIVE_TORQUE, factory 20 %)."""


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
    """Serial baud of the framed link (ignored by pseudo-terminals and USB CDC ports, used
    for the link budget); a servo bus's is `bus.baud`."""
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
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    """Host safety layer."""
    recover: RecoverSection = field(default_factory=RecoverSection)
    """Recovery from transient link faults."""
    log: str | None = None
    """Playback source: the log whose commands are replayed."""
    excitation: Any = None
    """Excitation source settings (configs/excitation/)."""
    goal: Any = None
    """The task's goal for a goal-directed task (the SO-101 reach target [x, y, z], m);
    null = drawn from the task's own goal distribution with `goal_seed`."""
    goal_seed: int = 0
    """Seed of the drawn goal (goal=null)."""
    calibration: str | None = None
    """A servo-bus robot's calibration: LeRobot's calibration file (PATH, as
    `python -m firmware_bridge.calibrate` or `lerobot-calibrate` writes it), or `factory`
    (servos as shipped: homing offset 0, 2048 counts = each joint's middle; the emulated
    arm's). Required for such a robot; a framed robot has none."""
    bus: BusSection = field(default_factory=BusSection)
    """A servo-bus robot's bus, protection and safe state."""

    def validate(self) -> None:
        """Checks a type cannot express; raises UserError naming the key. The keys that
        depend on the robot (a framed robot has no `calibration`; a servo bus has no
        recovery, and its `bus` section must fit its servos) are checked once the policy's
        robot is known (host.deploy, host.bus_deploy)."""
        if self.duration_s is None or self.duration_s <= 0:
            raise UserError(f"duration_s must be > 0, got {self.duration_s}")
