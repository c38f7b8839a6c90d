"""The schema of `python -m firmware_bridge.calibrate` (configs/calibrate.yaml), registered as
`calibrate_schema` by firmware_bridge.host.calibrate.
"""

from __future__ import annotations

from dataclasses import dataclass

from ppo_robot.cli import UserError


@dataclass
class CalibrateConfig:
    robot: str = "???"
    """Robot to calibrate: one driven over a servo bus (robot.yaml `transport: feetech`; its
    actuators' `bus_id` are the servo ids)."""
    port: str = "???"
    """The servo bus adapter's serial port (e.g. /dev/ttyACM0)."""
    out: str = "???"
    """Calibration file to write (LeRobot's format, e.g. ~/.cache/huggingface/lerobot/
    calibration/robots/so101_follower/<robot_id>.json); the run's JSON summary goes beside it
    as <stem>.summary.json."""
    baud: int | None = None
    """Bus baud rate; null = the robot's (robot.yaml `baud`: 1000000 for the SO-101, the STS
    factory rate and LeRobot's)."""
    timeout_s: float = 60.0
    """Record ranges this long, unless Ctrl-C or SIGTERM ends the recording first."""
    sample_hz: float = 50.0
    """Present-position samples per second while recording."""
    min_span: int = 200
    """Fewest counts (200 = 17.6 deg) each joint must sweep for its range to count as
    recorded; the SO-101's narrowest joint, the gripper, spans about 1200."""
    bus_timeout_ms: float = 50.0
    """How long one bus transaction waits for a servo's answer."""

    def validate(self) -> None:
        """Range checks a type cannot express; raises UserError naming the key."""
        checks = [
            (self.timeout_s > 0, f"timeout_s must be > 0, got {self.timeout_s}"),
            (0 < self.sample_hz <= 1000, f"sample_hz must be in (0, 1000], got {self.sample_hz}"),
            (1 <= self.min_span <= 4095, f"min_span must be in 1..4095, got {self.min_span}"),
            (self.bus_timeout_ms > 0, f"bus_timeout_ms must be > 0, got {self.bus_timeout_ms}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise UserError(msg)
