"""A deploy's session with a servo bus, around the loop: connect, prepare and enable, and
the safe stop. There is no controller of ours on such a robot, so what a controller would
do on its own the host does here.

- connect: ping every id the robot names (one that does not answer is named with its
  joint; none answering at all is a wrong baud or an unpowered arm); model numbers and
  firmware read and logged; each servo's homing offset checked against the calibration;
  the return delay read and the bus budget computed (`wire.servo_bus.bus_budget`: one sync
  read and one sync write at the baud, plus the adapter's latency), printed with the
  achievable rate, and a rate over it refused; an error bit in any status -> refused.
  Every refusal is a one-line UserError, before torque is ever enabled.
- prepare (still before torque): overload protection written where a servo differs and
  read back, the torque limit written and read back, the present pose read and written as
  the goal. enable: torque on, confirmed by read-back.
- safe_stop: the STS3215 has no communication watchdog (a servo keeps its last goal when
  the host dies), so every end of a run comes here: goal = the spec's safe state for the
  pose read now (the SO-101: hold the present pose), the torque limit reduced to
  `bus.hold_torque_limit` for `bus.hold_s`, then torque off on every servo, confirmed by
  reading TORQUE_ENABLE back, retried; the report says whether it was confirmed.

The registers are the bus's `ServoRegisters`; nothing here is a vendor's.
Host floor: imports wire (bus contract and budget) and host.servo_arm (pings, EEPROM).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np

from firmware_bridge.host.bus_transport import error_report
from firmware_bridge.host.servo_arm import ServoArm, ping_each
from firmware_bridge.wire.link import LinkError
from firmware_bridge.wire.servo_bus import BusError, BusErrorKind, Field, ServoBus, bus_budget
from ppo_robot.cli import RunFault, UserError

log = logging.getLogger("deploy")

TORQUE_OFF_TRIES = 5
"""Sync writes of torque off (each followed by a read-back of every servo still on)."""


@dataclass(frozen=True)
class BusInfo:
    """What connect found on the bus (the log's run record keeps it)."""

    port: str
    baud: int
    ids: tuple[int, ...]
    models: Mapping[int, int]
    firmware: Mapping[int, str]
    return_delay_us: Mapping[int, float]
    adapter_latency_us: float
    budget_ms: float
    """One tick on the bus: a sync read of every present block and a sync write of goals."""
    achievable_hz: float

    def record(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StopReport:
    """How the safe stop went."""

    torque_off_confirmed: bool
    held_s: float
    tries: int
    message: str


# ------------------------------------------------------------------------------ connect


def read_field(bus: ServoBus, sid: int, f: Field) -> int:
    return f.decode(bus.read(sid, f.address, f.size))


def connect(bus: ServoBus, arm: ServoArm, rate_hz: float, bc, homing: Mapping[int, int]) -> BusInfo:
    """Who is on the bus and whether it can carry rate_hz; UserError (one line) if not.
    `homing`: the calibration's homing offset per servo id; `bc`: the deploy's bus section."""
    models = _ping(bus, arm)
    try:
        info = _identify(bus, arm, bc, homing, models)
    except BusError as e:
        raise UserError(f"servo bus {bus.port}: {e} (at connect; torque never enabled)") from None
    refuse_error_bits(bus, zip(arm.joints, arm.id_list, strict=True), "at connect")
    log.info(
        "bus %s at %d baud: servos %s, model %s, firmware %s, return delay %g us; one tick "
        "(sync read + sync write, adapter latency %g us) takes %.2f ms on the bus: at most "
        "%.0f Hz, running %g Hz",
        info.port,
        info.baud,
        ",".join(map(str, info.ids)),
        _one_or_all(info.models),
        _one_or_all(info.firmware),
        max(info.return_delay_us.values()),
        info.adapter_latency_us,
        info.budget_ms,
        info.achievable_hz,
        rate_hz,
    )
    if rate_hz > info.achievable_hz:
        raise UserError(
            f"rate_hz={rate_hz:g}: one tick on the bus takes {info.budget_ms:.2f} ms (a sync "
            f"read and a sync write of {len(info.ids)} servos at {info.baud} baud, adapter "
            f"latency {info.adapter_latency_us:g} us), so at most {info.achievable_hz:.0f} Hz; "
            "lower the rate, raise the baud or measure bus.adapter_latency_us"
        )
    return info


def _ping(bus: ServoBus, arm: ServoArm) -> dict[int, int]:
    """Every servo's model number; UserError naming a servo that does not answer, or the
    baud when none does."""
    models, failed = ping_each(bus, arm)
    if failed and not models:
        heard = any(e.kind is not BusErrorKind.TIMEOUT for e in failed.values())
        got = "bytes came back but none parsed" if heard else "nothing came back"
        raise UserError(
            f"no servo answers on {bus.port} at {bus.baud} baud ({got}): wrong baud? (the "
            "robot's is robot.yaml `baud`, or set bus.baud=...) Or the arm is unpowered, or "
            "this is not its port"
        )
    if failed:
        missing = ", ".join(
            f"{sid} ({j})" for j, sid in zip(arm.joints, arm.id_list, strict=True) if sid in failed
        )
        raise UserError(
            f"servo id {missing} does not answer on {bus.port} at {bus.baud} baud (the others "
            "do): check its cable and its id"
        )
    return models


def _identify(bus: ServoBus, arm: ServoArm, bc, homing, models) -> BusInfo:
    """Firmware, return delay and homing offset of every servo (models: from the pings);
    the bus budget."""
    regs = bus.registers
    ids = arm.id_list
    firmware = {sid: ".".join(str(read_field(bus, sid, f)) for f in regs.firmware) for sid in ids}
    delays = {
        sid: read_field(bus, sid, regs.return_delay) * regs.return_delay_unit_us for sid in ids
    }
    if regs.homing_offset is not None:
        _check_homing(bus, arm, homing)
    budget_s = bus_budget(
        len(ids),
        regs.present_block[1],
        regs.goal_position.size,
        bus.baud,
        max(delays.values()),
        float(bc.adapter_latency_us),
        framing=bus.framing,
    )
    return BusInfo(
        bus.port,
        bus.baud,
        tuple(ids),
        models,
        firmware,
        delays,
        float(bc.adapter_latency_us),
        round(budget_s * 1e3, 4),
        round(1.0 / budget_s, 1),
    )


def _check_homing(bus: ServoBus, arm: ServoArm, homing: Mapping[int, int]) -> None:
    """The homing offset in each servo is the calibration's: a file of another arm (or one
    recalibrated since) would put every position off."""
    f = bus.registers.homing_offset
    for joint, sid in zip(arm.joints, arm.id_list, strict=True):
        got = read_field(bus, sid, f)
        if got != homing[sid]:
            raise UserError(
                f"servo {sid} ({joint}) has homing offset {got}, the calibration says "
                f"{homing[sid]}: a calibration of another arm, or the arm was recalibrated "
                "since (calibration=factory is for servos with offset 0)"
            )


def refuse_error_bits(bus: ServoBus, servos: Iterable[tuple[str, int]], when: str) -> None:
    """UserError naming every (joint, id) whose latest status carries error bits."""
    bad = error_report(bus, servos)
    if bad:
        raise UserError(f"{'; '.join(bad)} {when}: not enabling (check the supply, let it cool)")


def _one_or_all(values: Mapping[int, object]) -> str:
    """'777' when every servo says the same, else '{1: 777, ...}'."""
    distinct = set(values.values())
    return str(distinct.pop()) if len(distinct) == 1 else str(dict(values))


# ------------------------------------------------------------------------------ enable


def prepare(transport, bc, check_state: Callable[[np.ndarray], None] | None = None) -> None:
    """Everything before torque on, each write read back: overload protection (only where a
    servo differs: EEPROM wears), the torque limit, and goal = the pose read now, which
    `check_state` (the safety layer's envelope check) must pass. UserError (torque never
    enabled) if a servo does not take a write or the pose is outside the envelope."""
    from firmware_bridge.host.safety import SafetyFault

    bus, ids = transport.bus, transport.ids
    regs = bus.registers
    try:
        _write_protection(bus, ids, bc)
        _write_checked(bus, ids, regs.torque_limit, int(bc.torque_limit), "bus.torque_limit")
        present = transport.read_counts()[0].copy()
        if check_state is not None:
            check_state(transport.sensors(np.zeros(transport.n_sensors)))
        transport.write_goal_counts(present)
        goals = [read_field(bus, sid, regs.goal_position) for sid in ids]
    except (BusError, RunFault, LinkError, SafetyFault) as e:
        raise UserError(
            f"servo bus {bus.port}: {e} (before torque on; torque never enabled)"
        ) from None
    if goals != present.tolist():
        raise UserError(
            f"goal positions read {goals} after writing the present pose {present.tolist()}"
        )
    refuse_error_bits(bus, zip(transport.joints, ids, strict=True), "before torque on")


def _write_protection(bus: ServoBus, ids: list[int], bc) -> None:
    """The overload protection settings of the `bus` section, written (behind the EEPROM
    lock) to each servo whose value differs, then read back (RunFault if one did not take)."""
    regs = bus.registers
    want = {
        key: (f, round(getattr(bc, key) / scale)) for key, (f, scale) in regs.protection.items()
    }
    lock = regs.eeprom_lock
    for sid in ids:
        differ = {k: (f, v) for k, (f, v) in want.items() if read_field(bus, sid, f) != v}
        if not differ:
            continue
        log.info("servo %d: writing %s (EEPROM)", sid, {k: v for k, (_, v) in differ.items()})
        if lock is not None:
            bus.write(sid, lock.address, lock.encode(0))
        try:
            for f, v in differ.values():
                bus.write(sid, f.address, f.encode(v))
        finally:
            if lock is not None:
                with contextlib.suppress(BusError):  # the read-back tells what did not take
                    bus.write(sid, lock.address, lock.encode(1))
        bad = [
            f"{k} reads {got}, wrote {v}"
            for k, (f, v) in differ.items()
            if (got := read_field(bus, sid, f)) != v
        ]
        if bad:
            raise RunFault(f"servo {sid}: EEPROM write did not take: {'; '.join(bad)}")


def _write_checked(bus: ServoBus, ids: list[int], f: Field, value: int, what: str) -> None:
    for sid in ids:
        bus.write(sid, f.address, f.encode(value))
    bad = {sid: got for sid in ids if (got := read_field(bus, sid, f)) != value}
    if bad:
        raise RunFault(f"{what}={value} did not take: servos read {bad}")


def enable(transport) -> None:
    """Torque on for every servo, confirmed by read-back (RunFault if one stays off)."""
    bus, ids = transport.bus, transport.ids
    te = bus.registers.torque_enable
    for sid in ids:
        bus.write(sid, te.address, te.encode(1))
    off = [sid for sid in ids if read_field(bus, sid, te) != 1]
    if off:
        raise RunFault(f"servo {off} did not turn torque on")


# ------------------------------------------------------------------------------ stop


def safe_stop(
    transport,
    bc,
    safe_for: Callable[[np.ndarray], np.ndarray] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> StopReport:
    """The safe state: hold (goal = safe_for(the readings now), NaN = torque off at once),
    the torque limit reduced for `bc.hold_s`, then torque off on all, confirmed by read-back
    and retried. Never raises: the report says how far it got."""
    holding, note = _hold(transport, int(bc.hold_torque_limit), safe_for)
    held = float(bc.hold_s) if holding else 0.0
    sleep(held)
    confirmed, still, tries = _torque_off(transport.bus, transport.ids)
    hold = f"held {held:g} s at torque limit {bc.hold_torque_limit}" if held else "no hold"
    what = "torque off confirmed" if confirmed else f"torque off NOT confirmed for {still}"
    message = f"{hold}{f' ({note})' if note else ''}; {what} after {tries} tries"
    return StopReport(confirmed, held, tries, message)


def _hold(transport, limit: int, safe_for) -> tuple[bool, str | None]:
    """Goal = the safe pose for the readings now, torque limit reduced: whether the servos
    now hold, and a note (the pose could not be read: they hold their last goal)."""
    bus, ids = transport.bus, transport.ids
    note = None
    try:
        try:
            goal = transport.read_counts()[0].copy()
            if safe_for is not None:
                goal = _safe_goal(transport, safe_for, goal)
            transport.write_goal_counts(goal)
        except BusError as e:
            note = f"pose not read ({e}): the servos hold their last goal"
        tl = bus.registers.torque_limit
        bus.sync_write(ids, tl.address, [tl.encode(limit)] * len(ids))
    except LinkError as e:
        return False, f"bus lost: {e}"
    return True, note


def _safe_goal(transport, safe_for, present: np.ndarray) -> np.ndarray:
    """Goal counts of the spec's safe state for the readings just read; torque off at once
    for an actuator whose safe state is off (NaN)."""
    sensors = transport.sensors(np.zeros(transport.n_sensors))
    safe = np.asarray(safe_for(sensors), np.float64)
    off = ~np.isfinite(safe)
    if off.any():
        te = transport.bus.registers.torque_enable
        ids = [sid for sid, o in zip(transport.ids, off, strict=True) if o]
        transport.bus.sync_write(ids, te.address, [te.encode(0)] * len(ids))
    rad = np.where(off, transport.smap.to_rad(present), safe)
    return transport.smap.to_counts(rad)


def _torque_off(bus: ServoBus, ids: list[int]) -> tuple[bool, list[int], int]:
    """Torque off on every servo (one sync write), read back, again for those still on or
    silent; (all confirmed, those not, tries)."""
    te = bus.registers.torque_enable
    left = list(ids)
    tries = 0
    while left and tries < TORQUE_OFF_TRIES:
        tries += 1
        try:
            bus.sync_write(left, te.address, [te.encode(0)] * len(left))
        except LinkError:
            return False, left, tries
        still = []
        for sid in left:
            try:
                if read_field(bus, sid, te) != 0:
                    still.append(sid)
            except BusError:
                still.append(sid)
            except LinkError:
                return False, left, tries
        left = still
    return not left, left, tries
