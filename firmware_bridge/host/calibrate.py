"""`python -m firmware_bridge.calibrate robot=so101 port=/dev/ttyACM0 out=PATH`: record a servo
arm's calibration in LeRobot's file format, as `lerobot-calibrate` does, without key presses.

Hold the arm at the middle of its range when the command starts. It pings every servo of
the robot, turns torque off, homes each servo so that the held pose reads 2047, then
records each joint's range while you move the joints through their whole range (one
progress line a second on stderr) until `timeout_s` or Ctrl-C/SIGTERM, writes the range to
the servos as their angle limits, writes the file atomically and prints the one-line JSON
summary (also saved beside the file as <stem>.summary.json). Bad input (an unknown robot,
one without a servo bus, a port that does not open, a servo that does not answer, a joint
not moved) ends with one line and exit 2, and no file is written. The steps are in
`host.servo_arm`; the file and the count <-> rad map in `wire.servo_calibration`.

Host floor; the entry point is the shim firmware_bridge/calibrate.py.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from firmware_bridge.host.calibrate_config import CalibrateConfig
from firmware_bridge.host.servo_arm import (
    RangeRecording,
    ServoArm,
    home_half_turn,
    ping_all,
    read_positions,
    record_ranges,
    servo_arm,
    torque_off,
    write_limits,
)
from firmware_bridge.wire.feetech import FeetechBus
from firmware_bridge.wire.link import LinkError
from firmware_bridge.wire.servo_bus import BusError
from firmware_bridge.wire.servo_calibration import (
    COUNT,
    HALF_TURN,
    Calibration,
    JointCalibration,
)
from ppo_robot.cli import RunFault, UserError, run_app, typed_config, write_summary


def calibrate(cfg: Any) -> dict[str, Any]:
    """The command: check the input, run the steps on the bus, write the file and summary."""
    c = typed_config(cfg, CalibrateConfig)
    arm = servo_arm(c.robot)
    c = replace(c, baud=arm.baud) if c.baud is None else c  # baud=null: the robot's
    out = _out_path(c.out)
    bus = _open_bus(c)
    try:
        with bus:
            cal, rec, models = _run_steps(bus, arm, c)
    except LinkError as e:
        raise RunFault(f"port={c.port}: {e}") from None
    except BusError as e:
        raise RunFault(f"servo bus: {e}") from None
    cal.save(out)
    summary = _summary(arm, c, out, cal, rec, models)
    write_summary(summary, out.parent, name=f"{out.stem}.summary.json")
    return summary


def _out_path(text: str) -> Path:
    """The output file, checked before the bus is touched: not a folder, in a folder we may
    create or write."""
    out = Path(text).expanduser()
    if out.is_dir():
        raise UserError(f"out={text} is a folder; give the calibration file's path")
    folder = out.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise UserError(f"out={text}: cannot write in {folder}")
    return out


def _open_bus(c: CalibrateConfig) -> FeetechBus:
    try:
        return FeetechBus(
            c.port, c.baud, timeout_s=c.bus_timeout_ms / 1e3, raise_on_servo_error=False
        )
    except (LinkError, ValueError) as e:
        raise UserError(f"port={c.port}: {e}") from None


def _run_steps(
    bus: FeetechBus, arm: ServoArm, c: CalibrateConfig
) -> tuple[Calibration, RangeRecording, dict[int, int]]:
    ids = arm.id_list
    models = ping_all(bus, arm)
    torque_off(bus, ids)
    offsets = home_half_turn(bus, ids)
    _say(
        f"homed: the held pose reads {HALF_TURN}; move every joint through its whole range "
        f"(recording for {c.timeout_s:g} s, Ctrl-C ends it)"
    )
    rec = _record(bus, arm, c)
    lows, highs = [int(v) for v in rec.mins], [int(v) for v in rec.maxs]
    short = [
        f"{j} ({lo}..{hi})"
        for j, lo, hi in zip(arm.joints, lows, highs, strict=True)
        if hi - lo < c.min_span
    ]
    if short:
        raise UserError(
            f"joint(s) not moved through a range of at least min_span={c.min_span} counts: "
            f"{', '.join(short)}; nothing written"
        )
    write_limits(bus, ids, lows, highs)
    motors = tuple(
        JointCalibration(sid, 0, off, lo, hi)
        for sid, off, lo, hi in zip(ids, offsets, lows, highs, strict=True)
    )
    return Calibration(arm.joints, motors), rec, models


def _record(bus: FeetechBus, arm: ServoArm, c: CalibrateConfig) -> RangeRecording:
    """Record the ranges with Ctrl-C/SIGTERM ending the recording (not the program)."""
    stop = threading.Event()
    ids = arm.id_list
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in handlers:
        signal.signal(s, lambda *_: stop.set())
    try:
        return record_ranges(
            lambda out: read_positions(bus, ids, out),
            arm.joints,
            timeout_s=c.timeout_s,
            period_s=1.0 / c.sample_hz,
            stop=stop,
            progress=lambda t, lo, hi: _progress(arm, t, lo, hi),
        )
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)


def _progress(arm: ServoArm, t: float, mins: np.ndarray, maxs: np.ndarray) -> None:
    _say(
        f"{t:5.1f} s  "
        + "  ".join(f"{j} {lo}..{hi}" for j, lo, hi in zip(arm.joints, mins, maxs, strict=True))
    )


def _say(text: str) -> None:
    print(f"calibrate: {text}", file=sys.stderr, flush=True)


def _summary(
    arm: ServoArm,
    c: CalibrateConfig,
    out: Path,
    cal: Calibration,
    rec: RangeRecording,
    models: dict[int, int],
) -> dict[str, Any]:
    joints = {
        j: {
            **{k: v for k, v in cal.to_dict()[j].items() if k != "drive_mode"},
            "span_deg": round(float(np.degrees((m.range_max - m.range_min) * COUNT)), 1),
        }
        for j, m in zip(cal.joints, cal.motors, strict=True)
    }
    return {
        "robot": arm.name,
        "port": c.port,
        "baud": c.baud,
        "out": str(out),
        "ended": rec.ended,
        "duration_s": rec.duration_s,
        "samples": rec.samples,
        "bus_errors": rec.bus_errors,
        "models": {str(sid): model for sid, model in models.items()},
        "joints": joints,
    }


def main() -> None:
    run_app("calibrate", calibrate, CalibrateConfig)
