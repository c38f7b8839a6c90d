"""The SO-101 arm's layout: six STS3215 position servos on a Feetech bus, what each reports.

The arm is TheRobotStudio's SO-101 follower (LeRobot's `so101_follower`); the model is
so101.xml beside this file and every number's source is in README.md. Per servo the bus
reports present position, speed and load (18 sensors, in that order: six positions, six
speeds, six loads) and takes a goal position (six position actuators; the action moves each
goal from its last value by up to `GOAL_RATE` / control_hz a tick, action 0 holds it; safe
state: hold the measured pose). The arm's tasks are bound to
this layout elsewhere (`tasks.py`); this module holds only the hardware.
"""

from __future__ import annotations

import math

from envs.spec import Actuator, RobotSpec, Sensor

NAME = "so101"
JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
"""Joint names, base to gripper: also the MJCF's joints and actuators and LeRobot's motors."""
SERVO_IDS = {joint: i + 1 for i, joint in enumerate(JOINTS)}
"""Bus id of each joint's servo: LeRobot's SO-101 (shoulder_pan = 1 ... gripper = 6)."""
JOINT_RANGE = {
    "shoulder_pan": (-1.91986, 1.91986),
    "shoulder_lift": (-1.74533, 1.74533),
    "elbow_flex": (-1.69, 1.69),
    "wrist_flex": (-1.658063, 1.658063),
    "wrist_roll": (-2.74385, 2.84121),
    "gripper": (-0.174533, 1.745329),
}
"""Joint ranges (rad) of TheRobotStudio's so101_new_calib.xml (zero = the middle of each
range but wrist_roll's and gripper's); so101.xml's joint ranges and ctrlranges are these."""

ENCODER_COUNTS = 4096
"""STS3215: 12-bit magnetic encoder, counts per output revolution; present position is in
counts and present speed in counts per second."""
COUNT = 2 * math.pi / ENCODER_COUNTS
"""One encoder count (rad): the position reading's quantum, and (per second) the speed's."""
GEAR_RATIO = 345
"""STS3215-C018 (12 V): 1:345 gear train."""
STALL_TORQUE = 2.94
"""STS3215-C018 (12 V) stall torque (N m): 30 kg cm x 9.8 N/kg; so101.xml's forcerange."""
NO_LOAD_SPEED = 45 * 2 * math.pi / 60
"""STS3215-C018 (12 V) no-load speed: 45 rpm = 4.71 rad/s (0.22 s per 60 deg)."""
LOAD_FULL_SCALE = 1000
"""Present load on the bus: drive duty in 0.1 % (sign bit 10), so +-1000 = full drive. The
layout reports load as torque (N m, MuJoCo's actuatorfrc); a bus transport converts with
torque = load / LOAD_FULL_SCALE * STALL_TORQUE (exact at standstill, see README.md)."""
KP = 998.22
"""Position gain (N m/rad), so101.xml's <position kp>: MuJoCo Menagerie's, for the servo's P
gain 16 (LeRobot's SO-101 setting)."""
KD = 2.731
"""Velocity gain (N m s/rad), so101.xml's <position kv> (the motor's back-EMF damping)."""
CONTROL_HZ = 50.0
"""Default policy rate (LeRobot drives the SO-101 at 30-50 Hz): 4 physics steps of 5 ms;
100 Hz is 2 steps."""

GOAL_RATE = 0.5 * NO_LOAD_SPEED
"""Most a goal position moves per second (rad/s): half the no-load speed, 2.36 rad/s
(0.047 rad a tick at 50 Hz). The policy steers each servo's goal from its last value by at
most this (the incremental action map, `envs.action_map`), so the goal never runs further
ahead of the joint than a loaded servo can follow, and holding still is action 0."""

POSITION_MARGIN = 0.05
"""Room (rad) past a joint's range before its position reading is out of the envelope: the
range edge is a soft limit that a fast move pushes a few mrad into (README.md)."""
SPEED_LIMIT = 2.0 * NO_LOAD_SPEED
"""Speed envelope (rad/s): twice what the servo drives on its own; faster is being thrown."""
LOAD_LIMIT = 1.1 * STALL_TORQUE
"""Load envelope (N m): above every reading a servo gives (full drive = stall torque) plus
room for sensor noise."""


def home() -> dict[str, float]:
    """The pose at action 0: the middle of each joint's range (rad)."""
    return {j: 0.5 * (lo + hi) for j, (lo, hi) in JOINT_RANGE.items()}


def _sensors() -> tuple[Sensor, ...]:
    """Each servo's present position, speed and load, declared as the bus values they are
    (`bus_id`, `register`: physical = counts x resolution, a position from the calibrated
    middle), so a bus transport and the emulator read them by declaration."""
    pos = [
        Sensor(
            f"{j}_pos", "rad", lo - POSITION_MARGIN, hi + POSITION_MARGIN, resolution=COUNT,
            bus_id=SERVO_IDS[j], register="position",
        )
        for j, (lo, hi) in JOINT_RANGE.items()
    ]  # fmt: skip
    vel = [
        Sensor(
            f"{j}_vel", "rad/s", -SPEED_LIMIT, SPEED_LIMIT, resolution=COUNT,
            bus_id=SERVO_IDS[j], register="speed",
        )
        for j in JOINTS
    ]  # fmt: skip
    load = [
        Sensor(
            f"{j}_load", "N m", -LOAD_LIMIT, LOAD_LIMIT, resolution=STALL_TORQUE / LOAD_FULL_SCALE,
            bus_id=SERVO_IDS[j], register="load",
        )
        for j in JOINTS
    ]  # fmt: skip
    return (*pos, *vel, *load)


def _actuator(joint: str) -> Actuator:
    lo, hi = JOINT_RANGE[joint]
    return Actuator(
        joint, "rad", lo, hi, kind="position", safe=0.5 * (lo + hi), center=0.5 * (lo + hi),
        half_range=0.5 * (hi - lo), kp=KP, kd=KD, safe_mode="hold", rate=GOAL_RATE,
        position_sensor=f"{joint}_pos", bus_id=SERVO_IDS[joint],
    )  # fmt: skip


def layout(control_hz: float = CONTROL_HZ) -> RobotSpec:
    """The SO-101's sensors (position, speed, load per servo), its six position servos and
    their limits, at `control_hz` (50 Hz by default; 100 Hz works as well)."""
    return RobotSpec(
        name=NAME,
        version=2,
        xml="so101.xml",
        sensors=_sensors(),
        actuators=tuple(_actuator(j) for j in JOINTS),
        control_hz=float(control_hz),
    )
