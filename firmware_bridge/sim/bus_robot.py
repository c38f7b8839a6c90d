"""`sim_robot` for a robot on a servo bus (robot.yaml `transport: feetech`): its servos on
a pseudo-terminal, driving the same plant as the framed controller's stand-in.

There is no controller of ours on such a robot: the host talks to the servos themselves.
So the stand-in is `BusEmulator` (one emulated STS3215 per actuator, at its `bus_id`) on the
pty, polled between the physics steps of `RealTimeLoop`, and `ServoJoints` couples each
servo's memory to its actuator once per physics step:

- torque enabled: the goal position (counts -> rad) is the actuator's command; torque
  disabled (a real arm at power-on) or an absent servo: the joint is limp (NaN command,
  `sim.torque_off`), under gravity and its own friction;
- the commands reach the physics through `Plant.command`, so the reality's latency and
  action noise apply as for the framed robot; a new command is issued when a goal or a
  torque enable changes;
- the torque limit (0.1 % of stall torque) scales the actuator's force range from its
  value at start (the reality's, else the MJCF's): a reduced-torque hold sags;
- present position, speed and load are the plant's readings (the spec's sensor model:
  noise, bias, quantization) in the servo's units, with the supply voltage and temperature.

Counts <-> radians is `wire.servo_calibration.servo_map_for`, the host's own map: the
emulated arm has the factory calibration (`factory_map`: homing offset 0, 2048 = each
actuator's centre, the middle of its range). Which reading is which servo's position, speed
or load is the layout's declaration (`Sensor.bus_id`, `Sensor.register`). A host that
writes a homing offset sees the present position move as on a real servo.

Rehearsal faults: `absent_ids` (never answer), `error_ids` (an error bit in every status,
from the start or, with `error_after_s`, from that long after the first torque enable),
`bus_baud` (servos at another rate: nothing the host sends parses). The summary says how
often torque went on (`torque_enables`) and which servos still had it at exit.
Sim floor: imports wire (the Feetech table and calibration), envs and the sim stand-ins.
"""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.layout_types import BUS_REGISTERS
from firmware_bridge.sim.feetech_servos import STS3215_DEFAULTS, BusEmulator, ServoMemory
from firmware_bridge.sim.plant import Plant
from firmware_bridge.sim.port import log_applied, open_io, run_until_stopped
from firmware_bridge.sim.realtime import RealTimeLoop
from firmware_bridge.wire.feetech import DEFAULT_BAUD
from firmware_bridge.wire.feetech_table import BAUD_CODES, ERROR_NAMES, PERMILLE_FULL_SCALE, Reg
from firmware_bridge.wire.servo_calibration import ServoMap, factory_calibration, servo_map_for
from ppo_robot.cli import UserError, write_summary

log = logging.getLogger("sim_robot")

SPEED_MAX = (1 << 15) - 1
"""Largest |PRESENT_SPEED| (counts/s): the magnitude below its sign bit 15."""
SUPPLY_VOLTAGE = STS3215_DEFAULTS[Reg.PRESENT_VOLTAGE]
"""PRESENT_VOLTAGE reported (0.1 V): the emulated servos' supply."""
TEMPERATURE = STS3215_DEFAULTS[Reg.PRESENT_TEMPERATURE]
"""PRESENT_TEMPERATURE reported (deg C): a servo at room temperature."""


# ------------------------------------------------------------------------------ set-up


@dataclass(frozen=True)
class BusFaults:
    """The bus as configured: the servos' baud rate, absent ids, error bits per id and
    when they appear (None: from the start; else seconds after the first torque enable)."""

    baud: int
    absent: frozenset[int]
    errors: Mapping[int, int]
    error_after_s: float | None = None


def bus_faults(cfg: Any, spec) -> BusFaults:
    """sim_robot's bus keys, checked against the robot's servos; UserError naming the key."""
    from envs.robots import settings

    ids = servo_ids(spec)
    baud = cfg.bus_baud
    if baud is None:
        baud = settings(cfg.robot).get("baud", DEFAULT_BAUD)
    if baud not in BAUD_CODES.values():
        where = "bus_baud" if cfg.bus_baud is not None else f"robot {cfg.robot}'s robot.yaml baud"
        raise UserError(f"{where}: {baud} is not an STS baud rate ({sorted(BAUD_CODES.values())})")
    absent = frozenset(int(i) for i in cfg.absent_ids)
    unknown = sorted(absent - set(ids))
    if unknown:
        raise UserError(f"absent_ids: {unknown[0]} is not a servo of robot={cfg.robot} (ids {ids})")
    errors = _error_bits(cfg, ids, absent)
    after = cfg.error_after_s
    if after is not None and (not errors or after < 0):
        raise UserError(
            f"error_after_s={after}: needs error_ids (the bits that appear) and a time >= 0"
        )
    return BusFaults(int(baud), absent, errors, None if after is None else float(after))


def _error_bits(cfg: Any, ids: list[int], absent: frozenset[int]) -> dict[int, int]:
    """error_ids as {servo id: error bits}; UserError naming the entry that is wrong."""
    raw = cfg.error_ids if cfg.error_ids is not None else {}
    if not isinstance(raw, Mapping) or not all(isinstance(k, int) for k in raw):
        raise UserError(
            f"error_ids: must map servo ids to error bit names, e.g. error_ids={{3:overload}}; "
            f"got {raw}"
        )
    bits_of = {name: bit for bit, name in ERROR_NAMES.items()}
    errors = {}
    for sid, name in raw.items():
        if sid not in ids:
            raise UserError(f"error_ids: {sid} is not a servo of robot={cfg.robot} (ids {ids})")
        if sid in absent:
            raise UserError(f"error_ids: servo {sid} is also in absent_ids (it never answers)")
        if str(name).lower() not in bits_of:
            raise UserError(
                f"error_ids: {sid}: '{name}' is not an error bit (one of {', '.join(bits_of)})"
            )
        errors[int(sid)] = bits_of[str(name).lower()]
    return errors


def servo_ids(spec) -> list[int]:
    """Each actuator's bus id, in actuator order; UserError if one has none."""
    for a in spec.actuators:
        if a.bus_id is None:
            raise UserError(f"robot {spec.name}: actuator '{a.name}' has no bus_id (layout.py)")
    return [int(a.bus_id) for a in spec.actuators]


def servo_sensors(spec) -> np.ndarray:
    """(3, n_actuators) indices into the spec's readings of each servo's present position,
    speed and load: the sensors the layout declares with that servo's `bus_id` and each
    `register`; UserError naming the actuator whose servo lacks one."""
    declared = {(s.bus_id, s.register): k for k, s in enumerate(spec.sensors) if s.register}
    ids = servo_ids(spec)
    out = np.empty((len(BUS_REGISTERS), len(ids)), np.int64)
    for r, register in enumerate(BUS_REGISTERS):
        for i, (a, sid) in enumerate(zip(spec.actuators, ids, strict=True)):
            k = declared.get((sid, register))
            if k is None:
                raise UserError(
                    f"robot {spec.name}: actuator '{a.name}' (servo {sid}) has no sensor with "
                    f"bus_id={sid}, register='{register}' in its layout (a servo reports "
                    "present position, speed and load)"
                )
            out[r, i] = k
    return out


def factory_map(spec) -> ServoMap:
    """The emulated arm's counts <-> model units: factory servos (`factory_calibration`:
    homing offset 0) through the map the host uses (`servo_map_for`), so 2048 is each
    actuator's centre, as a host deploying with calibration=factory expects."""
    servo_ids(spec)  # every actuator has its servo (UserError naming one that has none)
    return servo_map_for(spec, factory_calibration(spec))


# ------------------------------------------------------------------------------ coupling


class ServoJoints:
    """Each physics step, the servos' memory into the plant (`apply`) and the plant's
    readings back into their memory (`report`). servos[i] is actuator i's servo, or None
    for an absent one (limp, never answering). Arrays are allocated once."""

    def __init__(
        self,
        plant: Plant,
        spec,
        servos: Sequence[ServoMemory | None],
        smap: ServoMap,
        sensors: np.ndarray,
        on_command: Callable[[int, np.ndarray], None] | None = None,
    ) -> None:
        self.plant, self.servos, self.smap, self.sensors = plant, list(servos), smap, sensors
        self.on_command = on_command
        n = len(self.servos)
        self.actuators = spec.actuator_index(plant.model)
        self.nominal_force = plant.model.actuator_forcerange[self.actuators].copy()
        """Each actuator's force range at start: what a torque limit of 100 % gives."""
        self.commands = 0
        """Commands issued to the plant (a goal or a torque enable changed)."""
        self.torque_enables = 0
        """Times a servo's torque went from off to on."""
        self.first_enable_step: int | None = None
        """The physics step (of `apply` calls) at which torque first went on."""
        self.steps = 0
        self._goal = np.zeros(n, np.int64)
        self._enabled = np.zeros(n, bool)
        self._rad = np.zeros(n)
        self._cmd = np.full(n, np.nan)
        self._limit = np.full(n, float(PERMILLE_FULL_SCALE))
        self._limit_now = np.full(n, np.nan)
        self._counts = np.zeros(n, np.int64)
        self._speed = np.zeros(n, np.int64)
        self._load = np.zeros(n, np.int64)

    def start(self) -> None:
        """Power-on: every joint limp from the first step, the first readings reported."""
        self.plant.hold(self._cmd)
        self.report(self.plant.sensors())

    def apply(self) -> None:
        """The host's writes into the plant: a new command if a goal or a torque enable
        changed (through the plant's latency), and the torque limits (at once)."""
        self.steps += 1
        for i, s in enumerate(self.servos):
            on = s is not None and s.torque_enabled
            if on and not self._enabled[i]:
                self.torque_enables += 1
                if self.first_enable_step is None:
                    self.first_enable_step = self.steps
            self._enabled[i] = on
            if on:
                self._goal[i] = s.goal_encoder_position()
            if s is not None:
                self._limit[i] = min(s.torque_limit, PERMILLE_FULL_SCALE)
        self.smap.to_rad(self._goal, out=self._rad)
        self._rad[~self._enabled] = np.nan  # torque off: limp
        if not np.array_equal(self._rad, self._cmd, equal_nan=True):
            self._cmd[:] = self._rad
            self.plant.command(self._cmd)
            self.commands += 1
            if self.on_command is not None:
                self.on_command(self.commands, self._cmd)
        if not np.array_equal(self._limit, self._limit_now):
            self._limit_now[:] = self._limit
            scale = self._limit / PERMILLE_FULL_SCALE
            self.plant.model.actuator_forcerange[self.actuators] = (
                self.nominal_force * scale[:, None]
            )

    def report(self, readings: np.ndarray) -> None:
        """The plant's readings (the spec's sensor model) as each servo's feedback."""
        pos, speed, load = (readings[k] for k in self.sensors)
        self.smap.to_present(pos, out=self._counts)
        self.smap.rad_s_to_speed(speed, out=self._speed)
        np.clip(self._speed, -SPEED_MAX, SPEED_MAX, out=self._speed)
        self.smap.torque_to_load(load, out=self._load)
        for i, s in enumerate(self.servos):
            if s is None:
                continue
            s.set_encoder_position(int(self._counts[i]))
            s.set_present(
                speed=int(self._speed[i]),
                load=int(self._load[i]),
                voltage=SUPPLY_VOLTAGE,
                temperature=TEMPERATURE,
            )


class _BusLoop(RealTimeLoop):
    """Physics on the real clock; in between, the bus: requests answered when due."""

    def __init__(
        self, cfg: Any, plant: Plant, joints: ServoJoints, emu: BusEmulator, fd: int, faults
    ) -> None:
        super().__init__(plant.dt, cfg.duration_s)
        self.plant, self.joints, self.emu, self.fd = plant, joints, emu, fd
        self.faults: BusFaults = faults
        self.errors_raised = faults.error_after_s is None
        """error_ids' bits are in the servos' status (from the start, or once due)."""

    def wait(self, timeout_s: float) -> None:
        due = self.emu.next_due_ns()
        if due is not None:  # an answer leaves the servo then: wake for it
            timeout_s = min(timeout_s, max(0.0, (due - time.monotonic_ns()) / 1e9))
        select.select([self.fd], [], [], timeout_s)
        self.emu.poll(time.monotonic_ns())

    def step(self, now_ns: int) -> None:  # noqa: ARG002
        self.joints.apply()
        self.plant.step()
        self.joints.report(self.plant.sensors())
        if not self.errors_raised:
            self._raise_errors_when_due()

    def _raise_errors_when_due(self) -> None:
        """error_after_s of physics time after the first torque enable: error_ids' bits
        appear in their servos' status (a servo that overloads mid-run)."""
        since = self.joints.first_enable_step
        after = self.faults.error_after_s
        if since is None or (self.joints.steps - since) * self.plant.dt < after:
            return
        self.errors_raised = True
        for servo in self.joints.servos:
            if servo is not None and servo.servo_id in self.faults.errors:
                servo.error_bits = self.faults.errors[servo.servo_id]
        log.info("error bits raised %.2f s after torque on: %s", after, dict(self.faults.errors))


# ------------------------------------------------------------------------------ serve


def _servos(spec, faults: BusFaults) -> list[ServoMemory | None]:
    """Actuator i's emulated servo at its bus id and the configured baud (None if absent),
    with its configured error bits."""
    code = {rate: c for c, rate in BAUD_CODES.items()}[faults.baud]
    out: list[ServoMemory | None] = []
    for sid in servo_ids(spec):
        servo = None if sid in faults.absent else ServoMemory(sid, {Reg.BAUD_RATE: code})
        if servo is not None and faults.error_after_s is None:
            servo.error_bits = faults.errors.get(sid, 0)
        out.append(servo)
    return out


def _errors_text(faults: BusFaults) -> str:
    if not faults.errors:
        return ""
    when = "" if faults.error_after_s is None else f" after {faults.error_after_s:g} s of torque"
    return f", errors {dict(faults.errors)}{when}"


def serve_bus(cfg: Any, spec, plant: Plant) -> dict[str, Any]:
    """sim_robot for a servo-bus robot: serve until SIGTERM/SIGINT or duration_s, then print
    the one-line JSON summary."""
    faults = bus_faults(cfg, spec)
    sensors = servo_sensors(spec)
    smap = factory_map(spec)
    servos = _servos(spec, faults)
    applied, port, link = io = open_io(cfg, faults.baud)
    on_command = None if applied is None else (lambda seq, v: log_applied(applied, seq, v))
    joints = ServoJoints(plant, spec, servos, smap, sensors, on_command)
    joints.start()
    emu = BusEmulator([s for s in servos if s is not None], port.fd)
    print(f"PORT {port.path}", flush=True)
    log.info(
        "robot=%s feetech bus at %d baud: servos %s%s%s, all limp; physics %.0f Hz, latency "
        "%.1f ms%s",
        spec.name,
        faults.baud,
        ",".join(str(s.servo_id) for s in servos if s is not None),
        f", absent {sorted(faults.absent)}" if faults.absent else "",
        _errors_text(faults),
        1 / plant.dt,
        plant.latency_s * 1e3,
        f", reality {cfg.reality}" if cfg.reality else "",
    )
    loop = _BusLoop(cfg, plant, joints, emu, port.fd, faults)
    run_until_stopped(loop, io)
    summary = {
        "robot": spec.name,
        "transport": "feetech",
        "baud": faults.baud,
        "sim_s": round(loop.k * plant.dt, 3),
        "servos": [s.servo_id for s in servos if s is not None],
        "commands_applied": joints.commands,
        "torque_enables": joints.torque_enables,
        "torque_on_at_exit": [s.servo_id for s in servos if s is not None and s.torque_enabled],
        "torque_limit_at_exit": {s.servo_id: s.torque_limit for s in servos if s is not None},
        "errors_raised": loop.errors_raised and bool(faults.errors),
        "requests": emu.requests,
        "answers": emu.answers,
        "garbled_bytes": emu.garbled_bytes,
        "rx_garbage_bytes": emu.parser.garbage,
        "rx_checksum_errors": emu.parser.checksum_errors,
    }
    log.info("stopped after %.1f s of simulated time", loop.k * plant.dt)
    write_summary(summary, None)
    return summary
