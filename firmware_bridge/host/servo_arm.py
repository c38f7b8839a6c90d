"""A servo arm on its bus, for calibration: which robot has one, and the steps that
lerobot-calibrate takes on it (ping, torque off, half-turn homing, recording the ranges,
writing the limits), as functions over a `FeetechBus` with no key presses and no prints.

The steps follow LeRobot's `SO101Follower.calibrate` (huggingface/lerobot,
src/lerobot/robots/so101_follower/so101_follower.py) and `SerialMotorsBus`
(src/lerobot/motors/motors_bus.py: `reset_calibration`, `set_half_turn_homings`,
`record_ranges_of_motion`; feetech/feetech.py: `write_calibration`, `disable_torque`):
torque off and position mode; homing offset 0 and limits 0..4095; the offset that makes
the held pose read 2047; min/max of the present positions while the user moves the
joints; then homing offset and limits written to the servos. Where LeRobot waits for Enter
we end on a deadline or a stop event (the command sets it on Ctrl-C/SIGTERM), and we check
by read-back what we wrote (a servo whose EEPROM was still locked drops the write).

Host floor: imports the wire (bus, memory table, calibration) and envs (the robot registry:
which robots have a servo bus, their actuators' bus ids, robot.yaml's baud).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from firmware_bridge.wire.feetech import DEFAULT_BAUD, FeetechBus
from firmware_bridge.wire.feetech_table import ErrorBit, Reg
from firmware_bridge.wire.servo_bus import BusError, ServoBus
from firmware_bridge.wire.servo_calibration import (
    COUNTS_PER_TURN,
    HALF_TURN,
    MAX_COUNT,
    MAX_HOMING_OFFSET,
)
from ppo_robot.cli import RunFault, UserError

PING_TRIES = 3
"""Pings per id before it counts as missing (one lost answer is noise, three are not)."""
HOMED_TOLERANCE = 100
"""Counts (8.8 deg) the pose may read away from 2047 just after homing (the user's hand
moves a little); further means the offset did not take."""
HOMED_WAIT_S = 1.0
"""How long the homed pose may take to show in the present position."""
MAX_BUS_ERRORS = 25
"""Failed reads in a row (half a second at 50 Hz) after which the recording stops as a fault."""


SERVO_BUS_TRANSPORTS = ("feetech",)
"""robot.yaml transports that are a servo bus these steps speak (`envs.robots.TRANSPORTS`):
Feetech STS; LeRobot's half-turn homing is Feetech's (Homing_Offset in EEPROM)."""


@dataclass(frozen=True)
class ServoArm:
    """A robot whose joints are servos on one bus: names in actuator order, bus ids, and the
    bus's baud rate (robot.yaml `baud`)."""

    name: str
    joints: tuple[str, ...]
    ids: Mapping[str, int]
    baud: int = DEFAULT_BAUD

    @property
    def id_list(self) -> list[int]:
        return [self.ids[j] for j in self.joints]


def _with_bus(names: list[str]) -> list[str]:
    """The robots among names whose transport is a servo bus."""
    from envs.robots import transport

    return [r for r in names if transport(r) in SERVO_BUS_TRANSPORTS]


def servo_arm(name: str) -> ServoArm:
    """The registered robot `name` as a servo arm: its robot.yaml `transport` is a servo bus,
    its actuators (in order) give the joints and their `bus_id`s, robot.yaml `baud` the
    baud rate. UserError for a robot that does not exist or has no servo bus."""
    from envs.robots import get_robot, robots, settings, transport
    from envs.spec import SpecError

    try:
        known = sorted(robots())
        with_bus = _with_bus(known)
        if name not in known:
            raise UserError(
                f"robot={name}: no such robot (known: {', '.join(known)}; "
                f"with a servo bus: {', '.join(with_bus)})"
            )
        if name not in with_bus:
            raise UserError(
                f"robot={name} has no servo bus to calibrate (its transport is "
                f"{transport(name)}; robots with one: {', '.join(with_bus)})"
            )
        actuators = get_robot(name).actuators
        baud = settings(name).get("baud", DEFAULT_BAUD)
    except SpecError as e:
        raise UserError(str(e)) from None
    unknown = [a.name for a in actuators if a.bus_id is None]
    if unknown:
        raise UserError(f"robot={name}: actuator(s) {', '.join(unknown)} have no bus_id")
    if isinstance(baud, bool) or not isinstance(baud, int):
        raise UserError(f"robot={name}: robot.yaml baud = {baud!r} is not an integer")
    ids = {a.name: int(a.bus_id) for a in actuators}
    return ServoArm(name, tuple(ids), ids, baud)


# ------------------------------------------------------------------------------ steps


def ping_each(bus: ServoBus, arm: ServoArm) -> tuple[dict[int, int], dict[int, BusError]]:
    """Ping every servo (up to PING_TRIES each): the model numbers of those that answered,
    and the last error of each that did not."""
    models: dict[int, int] = {}
    failed: dict[int, BusError] = {}
    for sid in arm.id_list:
        for _ in range(PING_TRIES):
            try:
                models[sid] = bus.ping(sid)
                failed.pop(sid, None)
                break
            except BusError as e:
                failed[sid] = e
    return models, failed


def ping_all(bus: FeetechBus, arm: ServoArm) -> dict[int, int]:
    """Every servo's model number; UserError naming the ids that do not answer, and
    RunFault for a servo whose encoder reports a fault."""
    models, failed = ping_each(bus, arm)
    if failed:
        missing = [
            f"{sid} ({j})" for j, sid in zip(arm.joints, arm.id_list, strict=True) if sid in failed
        ]
        raise UserError(
            f"servo id {', '.join(missing)} does not answer on {bus.port} at {bus.baud} baud "
            "(is the arm powered, are its ids set, is this its port?)"
        )
    broken = [sid for sid in models if bus.error_bits(sid) & ErrorBit.ANGLE_SENSOR]
    if broken:
        raise RunFault(f"servo id {broken} reports a magnetic encoder fault: it cannot be homed")
    return models


def torque_off(bus: FeetechBus, ids: list[int]) -> None:
    """Torque off on every servo, confirmed by reading TORQUE_ENABLE back."""
    for sid in ids:
        bus.write_register(sid, Reg.TORQUE_ENABLE, 0)
    still = [sid for sid in ids if bus.read_register(sid, Reg.TORQUE_ENABLE) != 0]
    if still:
        raise RunFault(f"servo id {still} still has torque on after TORQUE_ENABLE = 0")


def write_eeprom(bus: FeetechBus, sid: int, values: Mapping[Reg, int]) -> None:
    """EEPROM registers of one servo: unlock, write, lock, then read each back (RunFault
    if one did not take)."""
    bus.write_register(sid, Reg.LOCK, 0)
    try:
        for reg, value in values.items():
            bus.write_register(sid, reg, value)
    finally:
        # a failed lock is not reported: the write's own error, or the read-back, tells more
        with contextlib.suppress(BusError):
            bus.write_register(sid, Reg.LOCK, 1)
    bad = [
        f"{reg.name} reads {got} after writing {value}"
        for reg, value in values.items()
        if (got := bus.read_register(sid, reg)) != value
    ]
    if bad:
        raise RunFault(f"servo id {sid}: EEPROM write did not take: {'; '.join(bad)}")


def read_positions(bus: FeetechBus, ids: list[int], out: np.ndarray) -> np.ndarray:
    """One sync read of every servo's present position (counts) into out (int64)."""
    raw = np.zeros(2 * len(ids), np.uint8)
    bus.sync_read_into(ids, Reg.PRESENT_POSITION.address, Reg.PRESENT_POSITION.size, raw)
    word = raw.view("<u2").astype(np.int64)
    mag = word & ~(1 << Reg.PRESENT_POSITION.sign_bit)
    np.copyto(out, np.where(word >> Reg.PRESENT_POSITION.sign_bit, -mag, mag))
    return out


def home_half_turn(
    bus: FeetechBus, ids: list[int], *, sleep: Callable[[float], None] = time.sleep
) -> list[int]:
    """LeRobot's half-turn homing: position mode, offset 0 and limits 0..4095, read the
    pose, write offset = pose - 2047 (within +-2047), and wait until the pose reads 2047.
    Returns the offsets, in the order of ids."""
    for sid in ids:
        write_eeprom(
            bus,
            sid,
            {
                Reg.OPERATING_MODE: 0,
                Reg.HOMING_OFFSET: 0,
                Reg.MIN_ANGLE_LIMIT: 0,
                Reg.MAX_ANGLE_LIMIT: MAX_COUNT,
            },
        )
    pose = read_positions(bus, ids, np.empty(len(ids), np.int64))
    offsets = [int(np.clip(p - HALF_TURN, -MAX_HOMING_OFFSET, MAX_HOMING_OFFSET)) for p in pose]
    for sid, offset in zip(ids, offsets, strict=True):
        write_eeprom(bus, sid, {Reg.HOMING_OFFSET: offset})
    deadline = time.monotonic() + HOMED_WAIT_S
    while True:
        read_positions(bus, ids, pose)
        off = np.abs(pose - HALF_TURN) > HOMED_TOLERANCE
        if not off.any():
            return offsets
        if time.monotonic() > deadline:
            bad = ", ".join(
                f"id {s} reads {p}" for s, p, o in zip(ids, pose, off, strict=True) if o
            )
            raise RunFault(
                f"after homing to {HALF_TURN}: {bad} (was the arm moved while it was homed?)"
            )
        sleep(0.01)


def write_limits(bus: FeetechBus, ids: list[int], lows: list[int], highs: list[int]) -> None:
    """The recorded range as each servo's angle limits (LeRobot's write_calibration)."""
    for sid, lo, hi in zip(ids, lows, highs, strict=True):
        write_eeprom(bus, sid, {Reg.MIN_ANGLE_LIMIT: lo, Reg.MAX_ANGLE_LIMIT: hi})


# ------------------------------------------------------------------------------ ranges


@dataclass
class RangeRecording:
    """What recording the ranges of motion found."""

    mins: np.ndarray
    """Lowest present position per joint (counts)."""
    maxs: np.ndarray
    """Highest present position per joint (counts)."""
    samples: int
    """Sync reads that answered."""
    bus_errors: int
    """Sync reads that failed (skipped)."""
    ended: str
    """'timeout' or 'stopped' (Ctrl-C/SIGTERM)."""
    duration_s: float
    """Seconds recorded."""


def record_ranges(
    sample: Callable[[np.ndarray], object],
    joints: tuple[str, ...],
    *,
    timeout_s: float,
    period_s: float,
    stop: threading.Event,
    progress: Callable[[float, np.ndarray, np.ndarray], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    wait: Callable[[float], object] | None = None,
) -> RangeRecording:
    """Sample present positions (sample(out) fills out, int64 counts per joint) every
    period_s, tracking each joint's min and max, until timeout_s has passed or stop is set;
    progress(t, mins, maxs) about once a second. A joint whose reading jumps by half a turn
    between samples crossed the encoder's wrap: UserError (its range would be wrong)."""
    wait = stop.wait if wait is None else wait
    pos = np.empty(len(joints), np.int64)
    sample(pos)
    mins, maxs, prev = pos.copy(), pos.copy(), pos.copy()
    t0 = clock()
    samples, errors, in_row, next_report, next_t = 1, 0, 0, 1.0, 0.0
    while not stop.is_set() and (t := clock() - t0) < timeout_s:
        try:
            sample(pos)
            in_row = 0
        except BusError as e:
            errors, in_row = errors + 1, in_row + 1
            if in_row >= MAX_BUS_ERRORS:
                raise RunFault(f"{in_row} failed reads in a row while recording: {e}") from None
        else:
            _check_wrap(joints, prev, pos)
            np.minimum(mins, pos, out=mins)
            np.maximum(maxs, pos, out=maxs)
            prev[:] = pos
            samples += 1
        if progress is not None and t >= next_report:
            progress(t, mins, maxs)
            next_report += 1.0
        next_t += period_s
        wait(max(0.0, next_t - (clock() - t0)))
    ended = "stopped" if stop.is_set() else "timeout"
    return RangeRecording(mins, maxs, samples, errors, ended, round(clock() - t0, 3))


def _check_wrap(joints: tuple[str, ...], prev: np.ndarray, pos: np.ndarray) -> None:
    jumped = np.flatnonzero(np.abs(pos - prev) > COUNTS_PER_TURN // 2)
    if jumped.size:
        i = int(jumped[0])
        raise UserError(
            f"{joints[i]} jumped from {prev[i]} to {pos[i]} counts: it crossed the encoder's "
            "wrap, so its range cannot be recorded; start again holding the arm at the middle "
            "of its range"
        )
