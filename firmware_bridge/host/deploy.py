"""`python -m firmware_bridge.deploy policy=PATH port=PATH_OR_URL [rate_hz=R] [duration_s=D] [log_dir=DIR]`

Runs an exported policy on the robot's controller: handshake, checks the controller's
INFO against the policy's metadata (a mismatch is refused before anything is enabled),
enables, runs the fixed-rate loop, disables. Every tick is logged to an MCAP file as the
run goes. Ends with one JSON line of timing and fault figures (also saved in the log and
beside it as <log>.json).

A robot whose robot.yaml says `transport: feetech` has no controller of ours: the same
command drives its servos over their bus (`host.bus_deploy`, which needs
`calibration=PATH|factory`). Both paths share the steps of `host.deploy_steps`.

Exit codes: 0 run completed; 2 bad input or refused before enable (no COMMAND sent);
3 the run ended by fault (controller left in its safe state, log whole), a link lost
while DISABLE was in flight included; 130 / 143 stopped by SIGINT / SIGTERM (DISABLE sent
and confirmed first). Every exit after enable writes the closing JSON line and closes the
log; a recovery never re-enables after a stop was asked for. Recovery from transient
faults and the controller-reset probe are in firmware_bridge/host/recovery.py.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from firmware_bridge.host.deploy_config import DeployConfig
from firmware_bridge.host.deploy_steps import (
    checked_spec,
    end_run,
    load_policy,
    log_path,
    make_loop,
    make_source,
    quiet_process,
    robot_and_rate,
    run_failure,
    run_metadata,
    summary,
)
from firmware_bridge.host.recovery import Outcome, recover, reset_probe
from ppo_robot.cli import UserError, run_app, typed_config

log = logging.getLogger("deploy")


def deploy(raw: Any) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="deploy: %(message)s")
    from firmware_bridge.wire.link import LinkError, SerialLink
    from firmware_bridge.wire.session import HandshakeError, handshake, wait_state

    cfg: DeployConfig = typed_config(raw, DeployConfig)
    # ---- policy and robot spec: everything checkable before touching the port
    policy = load_policy(cfg)
    robot, rate_hz = robot_and_rate(cfg, policy)
    spec, rate_hz, kind = checked_spec(robot, rate_hz, policy, cfg.source)
    sc = cfg.safety
    if kind != "framed":  # the servos' own bus, no controller of ours
        from firmware_bridge.host.bus_deploy import deploy_bus

        return deploy_bus(cfg, spec, policy, sc, rate_hz, kind)
    if cfg.calibration is not None:
        raise UserError(
            f"calibration={cfg.calibration}: only a servo-bus robot has one (robot={robot} "
            "speaks our framed protocol through its controller)"
        )
    source, source_meta = make_source(cfg, spec, policy)

    # ---- link and handshake (refusals here send no COMMAND)
    try:
        link = SerialLink(
            str(cfg.port), int(cfg.baud), n_sensors=spec.n_sensors, n_actuators=spec.n_actuators
        )
    except LinkError as e:
        raise UserError(str(e)) from None
    try:
        try:
            sess = handshake(
                link,
                spec,
                rate_hz,
                int(cfg.baud),
                float(cfg.handshake_timeout_s),
                bool(cfg.check_link_budget),
                sc.stale_state_ms,
            )
            first = wait_state(link, max(0.5, 20.0 / rate_hz))
        except (HandshakeError, LinkError) as e:
            raise UserError(str(e)) from None
        if first is None:
            raise UserError(
                f"controller on {cfg.port} answered HELLO but streams no STATE at {rate_hz:g} Hz"
            )
        return _run(cfg, spec, policy, source, source_meta, link, sess, sc, rate_hz)
    finally:
        link.close()


def _run(cfg, spec, policy, source, source_meta, link, sess, sc, rate_hz) -> dict[str, Any]:
    """Log, enable, loop (with recoveries), disable, summarize. Every way out closes the
    log: a refusal at ENABLE (exit 2) without a summary, everything else with one."""
    from firmware_bridge.host.safety import SafetyLayer
    from firmware_bridge.logs.rollout_log import RolloutLog
    from firmware_bridge.wire.session import Disabled, disable

    meta = run_metadata(cfg, spec, policy, rate_hz, source_meta, _controller_meta(cfg, sess))
    rlog = RolloutLog(log_path(cfg, spec), meta)
    safety = SafetyLayer.for_spec(spec, sc)
    loop = make_loop(cfg, spec, link, source, safety, rlog, rate_hz, sc, sess.info.boot_id)
    out = Outcome()
    disabled = Disabled(False)
    try:
        with quiet_process(loop, cfg, rlog):
            try:
                _enable_and_run(cfg, link, spec, sess, loop, rlog, safety, sc, rate_hz, out)
            finally:
                disabled = disable(link, float(cfg.ack_timeout_s))
    except BaseException:  # refused at ENABLE: nothing ran, the log holds the refusal
        rlog.event("disable", "DISABLE confirmed" if disabled else "DISABLE not confirmed")
        rlog.close()
        raise
    return _finish(cfg, spec, link, sess, rlog, out, disabled, source_meta, rate_hz)


def _controller_meta(cfg, sess) -> dict[str, Any]:
    """The run record's account of the far side: the controller's INFO, the link's baud."""
    return {
        "controller": {
            "name": sess.info.name,
            "firmware_version": list(sess.info.firmware_version),
            "boot_id": sess.info.boot_id,
            "watchdog_ms": sess.info.watchdog_ms,
            "rate_range_hz": [sess.info.min_rate_hz, sess.info.max_rate_hz],
        },
        "baud": int(cfg.baud),
    }


def _enable_and_run(cfg, link, spec, sess, loop, rlog, safety, sc, rate_hz, out) -> None:
    """ENABLE (a refusal raises UserError), the loop, recoveries. A link that dies or an
    error of ours on the way ends the run as a fault, never as a traceback."""
    from firmware_bridge.wire.link import LinkError
    from firmware_bridge.wire.session import HandshakeError, enable, newest_state

    try:
        enable(link, float(cfg.ack_timeout_s))
    except (HandshakeError, LinkError) as e:
        rlog.event("refused", str(e))
        raise UserError(str(e)) from None
    rlog.event("enable", f"enabled at {rate_hz:g} Hz")
    try:
        got = newest_state(link, sc.stale_state_ms / 1e3)
        first, first_seq = got if got is not None else (None, 0)
        out.res = loop.run(first, first_seq, origin_ns=rlog.origin_ns)
        recover(cfg, link, spec, sess, loop, rlog, safety, sc, rate_hz, out)
    except Exception as e:  # LinkError outside the loop, or a bug: still a whole log
        out.res = run_failure(e, LinkError, out.res, spec)


def _finish(cfg, spec, link, sess, rlog, out, disabled, source_meta, rate_hz) -> dict[str, Any]:
    """Faults into the log, the closing summary (log, <log>.json, stdout), the exit code."""
    from firmware_bridge.host.safety import SafetyFault

    if cfg.status:
        print(file=sys.stderr)
    res = out.res
    if disabled.link_lost and res.fault is None:  # the line died while DISABLE was in flight
        res.fault = SafetyFault(
            "link_lost", f"link lost while DISABLE was in flight: {disabled.link_lost}"
        )
    if res.fault is not None and res.fault.kind == "stale_state":
        res.fault = reset_probe(link, sess.info.boot_id, res.fault)
        out.recorded = out.recorded and res.fault.kind == "stale_state"
    if res.fault is not None and not out.recorded:
        out.faults.append({"kind": res.fault.kind, "message": str(res.fault), "recovered": False})
        rlog.event("fault", f"{res.fault.kind}: {res.fault}")
    _log_link_errors(link, res, rlog)
    lost = f" (link lost: {disabled.link_lost})" if disabled.link_lost else ""
    rlog.event("disable", ("DISABLE confirmed" if disabled else "DISABLE not confirmed") + lost)
    stats = link.parser_stats
    link_fields = {
        "dropped_frames": stats.dropped_total,
        "dropped_by_kind": {
            k: v for k, v in stats.as_dict().items() if k.startswith("dropped_") and v
        },
        "disable_confirmed": bool(disabled),
    }
    s = summary(spec, rlog, out, source_meta, rate_hz, link_fields)
    return end_run(rlog, s, res, f"controller disabled: {bool(disabled)}")


def _log_link_errors(link, res, rlog) -> None:
    """Frames the parser dropped and STATEs out of order: counted, never silent."""
    stats = link.parser_stats
    if stats.dropped_total or res.states_out_of_order:
        kinds = ", ".join(
            f"{k.removeprefix('dropped_')} {v}"
            for k, v in stats.as_dict().items()
            if k.startswith("dropped_") and k != "dropped_total" and v
        )
        rlog.event(
            "link_errors",
            f"{stats.dropped_total} frames dropped ({kinds or 'none'}), "
            f"{res.states_out_of_order} STATEs out of order (ignored)",
        )


def main() -> None:
    run_app("deploy", deploy, DeployConfig)
