"""A robot's calibration on its servo bus: LeRobot's calibration file, and the map between
bus counts and the model's units (rad, rad/s, N m) that the host and the emulator share.

The file is the one `lerobot-calibrate` writes for an SO-101 follower
(~/.cache/huggingface/lerobot/calibration/robots/so101_follower/<robot_id>.json): per motor
name `{"id", "drive_mode", "homing_offset", "range_min", "range_max"}`, JSON with an indent of
4 (LeRobot's `Robot._save_calibration`: `draccus.dump(self.calibration, f, indent=4)` of a
`dict[str, MotorCalibration]`). We read what LeRobot writes and write what it reads.

What the numbers mean (LeRobot, huggingface/lerobot, src/lerobot/motors/):
- `feetech/feetech.py` `_get_half_turn_homings`: on Feetech servos
  Present_Position = Actual_Position - Homing_Offset; calibration writes the offset that
  makes the pose the user holds ("the middle of its range of motion",
  `robots/so101_follower/so101_follower.py` `calibrate`) read half a turn,
  int((4096 - 1) / 2) = 2047 (`HALF_TURN`). The offset is sign-magnitude with bit 11 (so
  |offset| <= 2047) and lives in the servo's EEPROM, so present positions are already
  homed when the host reads them.
- `motors_bus.py` `record_ranges_of_motion`: range_min/range_max are the extreme present
  positions seen while the user moves each joint through its range; LeRobot's SO-101
  writes drive_mode 0 for every motor.
- `motors_bus.py` `_normalize`/`_unnormalize`: RANGE_M100_100 maps [range_min, range_max]
  linearly onto [-100, 100] (negated for drive_mode 1) and clamps to the range; DEGREES is
  (counts - mid) * 360 / 4095 with mid = (range_min + range_max) / 2, unclamped.

Our map is LeRobot's DEGREES convention in radians, with three choices of ours:
  rad = center + sign * (counts - mid) * 2 pi / 4096,   sign = -1 for drive_mode 1,
and rad -> goal counts is rounded and clamped to [range_min, range_max] (commands are
clamped to the calibrated range, as RANGE_M100_100 clamps). (1) One count is 2 pi / 4096
(the encoder's 4096 counts a turn), not LeRobot's 360 / 4095 degrees: 0.024 % apart, a
quarter count at 1000 counts from mid. (2) drive_mode 1 inverts the direction (LeRobot's
DEGREES ignores drive_mode; its RANGE modes negate). (3) `center` (rad, per joint, default
0) is where the middle of the calibrated range lies in the model: our MJCF is
TheRobotStudio's "new calibration" (so101_new_calib.xml: "each joint's virtual zero is set
to the middle of its joint range"), which holds for shoulder_pan, shoulder_lift,
elbow_flex and wrist_flex but not for wrist_roll (range -2.744..2.841, middle 0.049 rad) or
the gripper (-0.175..1.745, middle 0.785 rad): pass the layout's actuator centres (the
middle of each joint range, envs/robots/so101/layout.py) and the middle of the recorded
range lands on the middle of the model's range for all six. This assumes the user swept
each joint to the same mechanical stops as the model's range; the homing pose itself does
not enter the map (it only keeps the range away from the encoder's wrap at 0/4095).
Speed and load follow the position's sign: a servo inverted by drive_mode reports speed and
load inverted too (assumed: Feetech's load sign bit gives the drive direction in the same
sense as position; to be checked by pushing a joint of a real arm).

`servo_map_for(spec, calibration)` is the one place a robot's map is made: the host's bus
transport and the emulator both call it (the emulator with `Calibration.identity`), so
2048 counts is each actuator's centre on both sides of the wire.

Wire floor: the standard library, numpy, wire.feetech_table (the load's full scale) and
ppo_robot.cli (errors, atomic write).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from firmware_bridge.wire.feetech_table import PERMILLE_FULL_SCALE
from ppo_robot.cli import UserError, atomic_write_text

COUNTS_PER_TURN = 4096
"""STS3215 encoder counts per output turn."""
MAX_COUNT = COUNTS_PER_TURN - 1
"""Largest position reading (and range_max) in one turn."""
COUNT = 2 * math.pi / COUNTS_PER_TURN
"""One count in radians."""
HALF_TURN = MAX_COUNT // 2
"""What the homed pose reads: LeRobot's int((resolution - 1) / 2) = 2047."""
MAX_HOMING_OFFSET = (1 << 11) - 1
"""|Homing_Offset| <= 2047: sign-magnitude with the sign in bit 11."""


class CalibrationError(UserError):
    """A calibration file (or calibration) that cannot be used; one line naming the file,
    the joint, the key and the value."""


@dataclass(frozen=True)
class JointCalibration:
    """One joint's servo calibration: LeRobot's MotorCalibration, field for field."""

    id: int
    """Bus id of the joint's servo."""
    drive_mode: int
    """0: counts grow with the joint angle; 1: inverted."""
    homing_offset: int
    """Counts the servo subtracts from its encoder (written to its EEPROM)."""
    range_min: int
    """Lowest present position seen while calibrating (homed counts)."""
    range_max: int
    """Highest present position seen while calibrating (homed counts)."""


KEYS = tuple(f.name for f in fields(JointCalibration))
"""A motor's keys in LeRobot's file, in the order it writes them."""


@dataclass(frozen=True)
class Calibration:
    """A robot's calibration: one `JointCalibration` per joint, in the spec's actuator order."""

    joints: tuple[str, ...]
    motors: tuple[JointCalibration, ...]

    def __post_init__(self) -> None:
        if len(self.joints) != len(self.motors):
            raise CalibrationError(
                f"calibration has {len(self.joints)} joints but {len(self.motors)} motors"
            )
        for joint, m in zip(self.joints, self.motors, strict=True):
            _check_motor(joint, m, "calibration")

    def __getitem__(self, joint: str) -> JointCalibration:
        return self.motors[self.joints.index(joint)]

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(m.id for m in self.motors)

    # -- the file

    @classmethod
    def load(cls, path: str | Path, joints: Sequence[str], ids: Mapping[str, int]) -> Calibration:
        """Read LeRobot's calibration file for a robot with these joints (actuator order)
        and servo ids; CalibrationError (one line: file, joint, key, value) if it does not
        fit the robot."""
        p = Path(path)
        try:
            text = p.read_text()
        except FileNotFoundError:
            raise CalibrationError(f"{p}: no such calibration file") from None
        except OSError as e:
            raise CalibrationError(f"{p}: cannot read it ({e.strerror})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise CalibrationError(
                f"{p}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})"
            ) from None
        return cls.from_dict(data, joints, ids, source=str(p))

    @classmethod
    def from_dict(
        cls, data: Any, joints: Sequence[str], ids: Mapping[str, int], source: str = "calibration"
    ) -> Calibration:
        """The calibration in LeRobot's JSON shape ({joint: {key: int}}), checked against the
        robot's joints and ids."""
        if not isinstance(data, dict):
            raise CalibrationError(
                f"{source}: must map each joint to its calibration, got {type(data).__name__}"
            )
        missing = [j for j in joints if j not in data]
        if missing:
            raise CalibrationError(f"{source}: no calibration for joint(s) {', '.join(missing)}")
        extra = [str(j) for j in data if j not in joints]
        if extra:
            raise CalibrationError(
                f"{source}: joint(s) {', '.join(extra)} are not the robot's "
                f"(its joints: {', '.join(joints)})"
            )
        motors = tuple(_motor(data[j], j, ids[j], source) for j in joints)
        return cls(tuple(joints), motors)

    def to_dict(self) -> dict[str, dict[str, int]]:
        """LeRobot's JSON shape: {joint: {id, drive_mode, homing_offset, range_min, range_max}}."""
        return {j: asdict(m) for j, m in zip(self.joints, self.motors, strict=True)}

    def save(self, path: str | Path) -> Path:
        """Write the file as LeRobot does (JSON, indent 4), atomically (tmp + rename)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(p, json.dumps(self.to_dict(), indent=4) + "\n")
        return p

    @classmethod
    def identity(
        cls,
        joints: Sequence[str],
        ids: Mapping[str, int],
        ranges_rad: Mapping[str, tuple[float, float]] | None = None,
    ) -> Calibration:
        """A factory servo's calibration (drive_mode 0, homing 0): each joint's range is its
        model range in counts around 2048 (mid 2048, so a factory servo at rest, reading
        2048, is at the middle of the joint's range), or the whole turn 0..4095 for a joint
        without a range."""
        motors = []
        for j in joints:
            lo, hi = 0, MAX_COUNT
            if ranges_rad is not None and j in ranges_rad:
                a, b = ranges_rad[j]
                half = min(round(0.5 * (b - a) / COUNT), MAX_COUNT - 2048)
                lo, hi = 2048 - half, 2048 + half
            motors.append(JointCalibration(ids[j], 0, 0, lo, hi))
        return cls(tuple(joints), tuple(motors))

    def servo_map(
        self,
        *,
        load_full_scale: float,
        stall_torque: float,
        center_rad: Sequence[float] | None = None,
    ) -> ServoMap:
        """The per-tick map for this calibration (see `ServoMap`)."""
        return ServoMap(
            self, load_full_scale=load_full_scale, stall_torque=stall_torque, center_rad=center_rad
        )


def factory_calibration(spec: Any) -> Calibration:
    """The calibration of a (duck-typed) robot's servos as shipped: homing offset 0 and
    each actuator's range in counts around 2048 (`Calibration.identity`), so that through
    `servo_map_for` 2048 is each actuator's centre. The emulated arm is calibrated so."""
    joints = tuple(a.name for a in spec.actuators)
    ids = {a.name: int(a.bus_id) for a in spec.actuators}
    return Calibration.identity(joints, ids, {a.name: (a.low, a.high) for a in spec.actuators})


def servo_map_for(
    spec: Any, cal: Calibration, *, load_full_scale: float = PERMILLE_FULL_SCALE
) -> ServoMap:
    """The map of a robot on a servo bus for a calibration (of its actuators, in order).

    From the (duck-typed) robot spec: each actuator's `center` (where the calibrated middle
    lies in the model; default the middle of its range) and its sensors' bus `register`s
    and resolutions: one load unit (1 / load_full_scale of stall torque) is the load
    sensors' resolution, so the stall torque is that x load_full_scale; positions and
    speeds must be in encoder counts (`COUNT` per count, per count/s). CalibrationError
    naming the robot and sensor otherwise."""
    joints = tuple(a.name for a in spec.actuators)
    if tuple(cal.joints) != joints:
        raise CalibrationError(
            f"calibration of joints {', '.join(cal.joints)} is not robot {spec.name}'s "
            f"({', '.join(joints)})"
        )
    loads = set()
    for s in spec.sensors:
        if s.register == "load":
            loads.add(float(s.resolution))
        elif s.register in ("position", "speed") and not math.isclose(s.resolution, COUNT):
            raise CalibrationError(
                f"robot {spec.name}: sensor {s.name} has resolution {s.resolution:g}; a bus "
                f"{s.register} is in encoder counts ({COUNT:.6g} per count)"
            )
    if len(loads) != 1:
        raise CalibrationError(
            f"robot {spec.name}: its load sensors need one resolution (one bus load unit, "
            f"stall torque / {load_full_scale:g}), got {sorted(loads)}"
        )
    centers = [a.center if a.center is not None else 0.5 * (a.low + a.high) for a in spec.actuators]
    return cal.servo_map(
        load_full_scale=load_full_scale,
        stall_torque=loads.pop() * load_full_scale,
        center_rad=centers,
    )


def _motor(entry: Any, joint: str, servo_id: int, source: str) -> JointCalibration:
    """One joint's entry of the file, every key present, known and an integer."""
    where = f"{source}: {joint}"
    if not isinstance(entry, dict):
        raise CalibrationError(f"{where}: must be a mapping of {', '.join(KEYS)}, got {entry!r}")
    unknown = [str(k) for k in entry if k not in KEYS]
    if unknown:
        raise CalibrationError(
            f"{where}: unknown key(s) {', '.join(unknown)} (keys: {', '.join(KEYS)})"
        )
    absent = [k for k in KEYS if k not in entry]
    if absent:
        raise CalibrationError(f"{where}: missing key(s) {', '.join(absent)}")
    for k in KEYS:
        v = entry[k]
        if isinstance(v, bool) or not isinstance(v, int):
            raise CalibrationError(f"{where}.{k} = {v!r} is not an integer")
    m = JointCalibration(**{k: entry[k] for k in KEYS})
    if m.id != servo_id:
        raise CalibrationError(
            f"{where}.id = {m.id} but the robot's {joint} servo is id {servo_id}: "
            "a calibration file for other ids"
        )
    _check_motor(joint, m, source)
    return m


def _check_motor(joint: str, m: JointCalibration, source: str) -> None:
    where = f"{source}: {joint}"
    if m.drive_mode not in (0, 1):
        raise CalibrationError(f"{where}.drive_mode = {m.drive_mode} is not 0 or 1")
    if abs(m.homing_offset) > MAX_HOMING_OFFSET:
        raise CalibrationError(
            f"{where}.homing_offset = {m.homing_offset} is outside "
            f"-{MAX_HOMING_OFFSET}..{MAX_HOMING_OFFSET}"
        )
    for k in ("range_min", "range_max"):
        v = getattr(m, k)
        if not 0 <= v <= MAX_COUNT:
            raise CalibrationError(f"{where}.{k} = {v} is outside 0..{MAX_COUNT}")
    if m.range_min >= m.range_max:
        raise CalibrationError(
            f"{where}: range_min = {m.range_min} is not below range_max = {m.range_max}"
        )


class ServoMap:
    """Counts <-> model units for one calibration, vectorized over the joints (last axis).

    Every method takes `out=` (an array of the result's shape and a float or integer dtype as
    noted) and then allocates nothing: the host and the emulator call them each tick.
    position counts -> rad:  center + sign * (counts - mid) * COUNT
    rad -> goal counts:      rounded and clamped to [range_min, range_max]
    rad -> present counts:   rounded, wrapped to 0..4095 (what the servo reports), unclamped
    speed counts/s <-> rad/s: sign * COUNT per count/s
    load (0.1 %) <-> N m:    sign * stall_torque / load_full_scale per unit
    """

    def __init__(
        self,
        cal: Calibration,
        *,
        load_full_scale: float,
        stall_torque: float,
        center_rad: Sequence[float] | None = None,
    ) -> None:
        if load_full_scale <= 0 or stall_torque <= 0:
            raise ValueError("load_full_scale and stall_torque must be > 0")
        n = len(cal.joints)
        lo = np.array([m.range_min for m in cal.motors], dtype=np.float64)
        hi = np.array([m.range_max for m in cal.motors], dtype=np.float64)
        self.sign = np.array([-1.0 if m.drive_mode else 1.0 for m in cal.motors])
        self.mid = 0.5 * (lo + hi)
        self.range_min, self.range_max = lo, hi
        self.center = np.zeros(n) if center_rad is None else np.asarray(center_rad, np.float64)
        if self.center.shape != (n,):
            raise ValueError(f"center_rad needs {n} values, got {self.center.shape}")
        self.rad_per_count = self.sign * COUNT
        self.nm_per_load = self.sign * (stall_torque / load_full_scale)
        self.load_full_scale = float(load_full_scale)
        self._scratch = np.empty(n)

    @staticmethod
    def _float_out(x: Any, out: np.ndarray | None) -> np.ndarray:
        """x copied into out (a new float64 array when out is None), to be scaled in place:
        a ufunc fed integer counts with a float out casts them through a temporary buffer
        on every call, a copy into out casts without one."""
        if out is None:
            return np.array(x, np.float64)
        np.copyto(out, x)
        return out

    def to_rad(self, counts: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Present (or goal) position counts -> joint angle (rad)."""
        out = self._float_out(counts, out)
        np.subtract(out, self.mid, out=out)
        np.multiply(out, self.rad_per_count, out=out)
        return np.add(out, self.center, out=out)

    def _buf(self, x: Any) -> np.ndarray:
        """The scratch array for one tick's values; a new one for another shape (a batch)."""
        return self._scratch if np.shape(x) == self._scratch.shape else np.empty(np.shape(x))

    def _counts(self, rad: Any) -> np.ndarray:
        """(rad - center) / rad_per_count + mid, rounded, in a scratch array; refuses NaN/inf."""
        s = self._buf(rad)
        np.subtract(rad, self.center, out=s)
        if not math.isfinite(float(s.sum())):
            raise ValueError(f"joint angle not finite: {np.asarray(rad).tolist()}")
        np.divide(s, self.rad_per_count, out=s)
        np.add(s, self.mid, out=s)
        return np.rint(s, out=s)

    def to_counts(self, rad: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Joint angle (rad) -> goal position counts, rounded and clamped to the calibrated
        range (an integer array unless `out` says otherwise)."""
        s = self._counts(rad)
        np.maximum(s, self.range_min, out=s)  # the ufuncs, not np.clip: no wrapper objects
        return _into(np.minimum(s, self.range_max, out=s), out)

    def to_present(self, rad: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Joint angle (rad) -> the present position a homed servo reports (rounded, one
        turn 0..4095, not clamped): the emulator's side."""
        s = self._counts(rad)
        return _into(np.mod(s, COUNTS_PER_TURN, out=s), out)

    def speed_to_rad_s(self, speed: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Present speed (counts/s) -> joint speed (rad/s)."""
        out = self._float_out(speed, out)
        return np.multiply(out, self.rad_per_count, out=out)

    def rad_s_to_speed(self, rad_s: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Joint speed (rad/s) -> present speed (counts/s, rounded)."""
        s = np.divide(rad_s, self.rad_per_count, out=self._buf(rad_s))
        return _into(np.rint(s, out=s), out)

    def load_to_torque(self, load: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Present load (0.1 % of full drive) -> torque (N m): exact at standstill."""
        out = self._float_out(load, out)
        return np.multiply(out, self.nm_per_load, out=out)

    def torque_to_load(self, torque: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Torque (N m) -> present load (rounded, within +-load_full_scale)."""
        s = np.divide(torque, self.nm_per_load, out=self._buf(torque))
        np.rint(s, out=s)
        return _into(np.clip(s, -self.load_full_scale, self.load_full_scale, out=s), out)


def _into(values: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """Whole-number floats into out (any dtype), or a new int64 array."""
    if out is None:
        return values.astype(np.int64)
    np.copyto(out, values, casting="unsafe")
    return out
