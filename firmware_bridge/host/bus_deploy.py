"""`python -m firmware_bridge.deploy policy=PATH port=PORT calibration=PATH|factory` for a
robot on a servo bus (robot.yaml `transport: feetech`, the SO-101): the framed deploy's own
steps (`host.deploy_steps`: policy checks, sources, log, loop, summary) with the bus as the
loop's transport (`host.bus_transport.BusTransport`) and the session of `host.bus_session`
in place of the controller's handshake, ENABLE and DISABLE.

Order: everything checkable without the port (the policy against the robot, the
calibration file against its ids, the `bus` section) -> open the bus -> connect (ids,
baud, homing offsets, error bits, the bus budget printed with the achievable rate) ->
prepare (protection, torque limit, goal = the measured pose) -> torque on -> the loop
(soft start from the measured pose, `safety.max_delta`: by default the joints' speed
envelope per tick) -> the safe stop, whatever ended the run (duration, fault, Ctrl-C,
SIGTERM, an error of ours): hold at reduced torque, torque off confirmed by read-back.

Exit codes as the framed deploy's: 2 refused before torque was ever enabled (one line), 3
a fault (the summary says whether torque off was confirmed; torque off not confirmed is
a fault too), 130 / 143 SIGINT / SIGTERM after the safe stop.
Host floor; called by host.deploy for a robot whose transport is a servo bus.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict, fields, replace
from typing import Any

import numpy as np

from firmware_bridge.host.bus_session import BusInfo, connect, enable, prepare, safe_stop
from firmware_bridge.host.bus_transport import BusTransport
from firmware_bridge.host.deploy_config import BusSection
from firmware_bridge.host.deploy_steps import (
    end_run,
    log_path,
    make_loop,
    make_source,
    quiet_process,
    run_failure,
    run_metadata,
    summary,
)
from firmware_bridge.host.loop import LoopResult, pct
from firmware_bridge.host.recovery import Outcome
from firmware_bridge.host.safety import SafetyConfig, SafetyFault
from firmware_bridge.wire.feetech import FeetechBus
from firmware_bridge.wire.link import LinkError
from firmware_bridge.wire.servo_bus import BusError
from firmware_bridge.wire.servo_calibration import (
    Calibration,
    factory_calibration,
    servo_map_for,
)
from ppo_robot.cli import RunFault, UserError

log = logging.getLogger("deploy")

BUSES = {"feetech": FeetechBus}
"""robot.yaml transport -> the `ServoBus` that speaks it (Dynamixel 2.0 would be one more)."""


def deploy_bus(cfg: Any, spec, policy, sc: SafetyConfig, rate_hz: float, kind: str) -> dict:
    """The deploy of a servo-bus robot; the policy was checked against `spec` already."""
    from firmware_bridge.host.safety import SafetyLayer
    from firmware_bridge.host.servo_arm import servo_arm
    from firmware_bridge.logs.rollout_log import RolloutLog

    if int(cfg.recover.max):
        raise UserError(
            f"recover.max={cfg.recover.max}: recovery re-enables a controller of ours; on a "
            "servo bus every fault ends in the safe stop (leave recover.max at 0)"
        )
    arm = servo_arm(spec.name)
    bus_cls = BUSES[kind]
    bc = _bus_section(cfg, bus_cls)
    cal = _calibration(cfg, spec, arm)
    smap = servo_map_for(spec, cal)
    sc = _default_max_delta(sc, spec, rate_hz)
    source, source_meta = make_source(cfg, spec, policy)
    baud = int(bc.baud if bc.baud is not None else arm.baud)
    try:
        bus = bus_cls(
            str(cfg.port), baud, timeout_s=bc.setup_timeout_ms / 1e3, raise_on_servo_error=False
        )
    except (LinkError, ValueError) as e:
        raise UserError(f"port={cfg.port}: {e}") from None
    with bus:
        try:
            info = connect(bus, arm, rate_hz, bc, {m.id: m.homing_offset for m in cal.motors})
        except LinkError as e:
            raise UserError(f"port={cfg.port}: {e}") from None
        transport = BusTransport(bus, spec, smap)
        link_meta = {"transport": kind, **_bus_meta(cfg, info, cal, sc, bc)}
        rlog = RolloutLog(
            log_path(cfg, spec), run_metadata(cfg, spec, policy, rate_hz, source_meta, link_meta)
        )
        transport.clock, transport.origin_ns = rlog.clock, rlog.origin_ns  # one clock: STAMPS
        safety = SafetyLayer.for_spec(spec, sc)
        loop = make_loop(cfg, spec, transport, source, safety, rlog, rate_hz, sc)
        return _run(cfg, spec, transport, loop, rlog, bc, info, source_meta, rate_hz)


def _bus_section(cfg: Any, bus_cls) -> BusSection:
    """The `bus` section, checked against what the servos can hold; UserError naming the key."""
    bc = cfg.bus
    regs = bus_cls.registers
    full = regs.torque_full_scale
    checks = [
        ("adapter_latency_us", bc.adapter_latency_us >= 0, ">= 0"),
        ("read_timeout_ms", bc.read_timeout_ms > 0, "> 0"),
        ("setup_timeout_ms", bc.setup_timeout_ms > 0, "> 0"),
        ("torque_limit", 0 < bc.torque_limit <= full, f"in 1..{full} (0.1 % of stall torque)"),
        ("hold_torque_limit", 0 <= bc.hold_torque_limit <= bc.torque_limit,
         f"in 0..torque_limit ({bc.torque_limit}): the hold is at reduced torque"),
        ("hold_s", bc.hold_s >= 0, ">= 0"),
    ]  # fmt: skip
    for key, (f, scale) in regs.protection.items():
        value = getattr(bc, key)
        fits = value >= 0 and value % scale == 0 and value / scale < 1 << (8 * f.size)
        checks.append((key, fits, f"a multiple of {scale:g} below {scale * (1 << 8 * f.size):g}"))
    for key, ok, need in checks:
        if not ok:
            raise UserError(f"bus.{key}={getattr(bc, key)}: must be {need}")
    return bc


def _calibration(cfg: Any, spec, arm) -> Calibration:
    """calibration=PATH (LeRobot's file, checked against the robot's joints and ids) or
    calibration=factory; refused when missing."""
    if cfg.calibration is None:
        raise UserError(
            f"calibration: robot={spec.name} is driven over its servo bus and needs its "
            f"calibration: calibration=PATH (LeRobot's file, from python -m "
            f"firmware_bridge.calibrate robot={spec.name} or lerobot-calibrate) or "
            "calibration=factory (servos as shipped, homing offset 0)"
        )
    if str(cfg.calibration) == "factory":
        return factory_calibration(spec)
    return Calibration.load(str(cfg.calibration), arm.joints, arm.ids)


def _default_max_delta(sc: SafetyConfig, spec, rate_hz: float) -> SafetyConfig:
    """safety.max_delta=null on a servo arm: the joints' speed envelope per tick (the
    layout's speed sensors' high), so a goal never runs ahead of what the envelope allows."""
    if sc.max_delta is not None:
        return sc
    speeds = [s.high for s in spec.sensors if s.register == "speed"]
    if not speeds:
        return sc
    delta = round(min(speeds) / rate_hz, 6)
    log.info(
        "safety.max_delta is null: %g rad per tick, the joints' speed envelope (%g rad/s, the "
        "high of the layout's speed sensors) at %g Hz",
        delta,
        min(speeds),
        rate_hz,
    )
    return replace(sc, max_delta=delta)


STAMPS = {
    "clock_offset_s": 0.0,
    "command_transit_s": 0.0,
    "note": "a servo bus has no clock of its own: each STATE is stamped (t_us) on the log's "
    "host clock, from its origin, when its sync read left, so the clocks are one; a goal's "
    "time is when its sync write left (its transfer and the servo's lag are the latency)",
}
"""The run record's `timing` of a servo bus: how its STATE stamps and the host's times
relate (read by `firmware_bridge.analysis.sysid_clock`)."""


def _bus_meta(cfg: Any, info: BusInfo, cal: Calibration, sc: SafetyConfig, bc) -> dict:
    """The run record's account of the far side: the bus, the calibration, the safety
    settings in force (max_delta's default included)."""
    return {
        "bus": {**info.record(), **{f.name: getattr(bc, f.name) for f in fields(BusSection)}},
        "calibration": {"source": str(cfg.calibration), "joints": cal.to_dict()},
        "safety": asdict(sc),
        "baud": info.baud,
        "timing": STAMPS,
    }


def _run(cfg, spec, transport, loop, rlog, bc, info, source_meta, rate_hz) -> dict[str, Any]:
    """Prepare, torque on, loop, safe stop, summarize. A refusal before torque on (exit 2)
    closes the log without a summary; everything after torque on ends in the safe stop and
    a summary."""
    out = Outcome()
    with quiet_process(loop, cfg, rlog):
        try:
            prepare(transport, bc, loop.safety.check_state)
        except BaseException as e:  # refused: torque never enabled, the log holds why
            rlog.event("refused", str(e))
            rlog.close()
            raise
        try:
            _enable_and_run(transport, loop, rlog, spec, rate_hz, out, bc.read_timeout_ms)
        finally:
            transport.bus.timeout_s = bc.setup_timeout_ms / 1e3
            stop = safe_stop(transport, bc, spec.safe_command_for)
    return _finish(cfg, spec, transport, info, rlog, out, stop, source_meta, rate_hz)


def _enable_and_run(transport, loop, rlog, spec, rate_hz, out, read_timeout_ms) -> None:
    """Torque on, then the loop (its reads under `read_timeout_ms`); a failure on the way
    is the run's fault, never a traceback."""
    try:
        try:
            enable(transport)
        except (BusError, RunFault) as e:  # torque did not come on (on every servo)
            out.res = LoopResult(sensors=np.zeros((0, spec.n_sensors)), stopped_by="fault")
            out.res.fault = SafetyFault("enable_failed", str(e))
            return
        rlog.event("enable", f"torque on at {rate_hz:g} Hz")
        transport.bus.timeout_s = read_timeout_ms / 1e3
        out.res = loop.run(None, 0, origin_ns=rlog.origin_ns)
    except Exception as e:  # LinkError outside the loop, or a bug: still a whole log
        out.res = run_failure(e, LinkError, out.res, spec)


def _finish(cfg, spec, transport, info, rlog, out, stop, source_meta, rate_hz) -> dict:
    """Faults and bus errors into the log, the torque off, the summary, the exit code."""
    if cfg.status:
        print(file=sys.stderr)
    res = out.res
    if res.fault is not None and res.fault.kind == "stale_state" and transport.last_error:
        res.fault = SafetyFault(
            "stale_state", f"{res.fault}; last failed read: {transport.last_error}"
        )
    if res.fault is None and not stop.torque_off_confirmed:
        res.fault = SafetyFault("torque_off_unconfirmed", stop.message)
    if res.fault is not None:
        out.faults.append({"kind": res.fault.kind, "message": str(res.fault), "recovered": False})
        rlog.event("fault", f"{res.fault.kind}: {res.fault}")
    if transport.dropped:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(transport.errors.items()))
        rlog.event("bus_errors", f"{transport.dropped} failed sync reads ({kinds})")
    rlog.event("torque_off", stop.message)
    link_fields = {
        "bus_errors": transport.dropped,
        "bus_errors_by_kind": dict(transport.errors),
        "bus_read_p50_ms": pct(transport.read_times(), 50),
        "bus_read_p99_ms": pct(transport.read_times(), 99),
        "bus_budget_ms": info.budget_ms,
        "bus_achievable_hz": info.achievable_hz,
        "torque_off_confirmed": stop.torque_off_confirmed,
        "disable_confirmed": stop.torque_off_confirmed,
    }
    s = summary(spec, rlog, out, source_meta, rate_hz, link_fields)
    return end_run(rlog, s, res, f"torque off confirmed: {stop.torque_off_confirmed}")
