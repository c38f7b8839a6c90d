"""`python -m firmware_bridge.deploy policy=PATH port=PATH_OR_URL [rate_hz=R] [duration_s=D] [log_dir=DIR]`

Runs an exported policy on the robot's controller: handshake, checks the controller's
INFO against the policy's metadata (a mismatch is refused before anything is enabled),
enables, runs the fixed-rate loop, disables. Every tick is logged to an MCAP file as the
run goes. Ends with one JSON line of timing and fault figures (also saved in the log and
beside it as <log>.json).

Exit codes: 0 run completed; 2 bad input or refused before enable (no COMMAND sent);
3 the run ended by fault (controller left in its safe state, log whole), a link lost
while DISABLE was in flight included; 130 / 143 stopped by SIGINT / SIGTERM (DISABLE sent
and confirmed first). Every exit after enable writes the closing JSON line and closes the
log; a recovery never re-enables after a stop was asked for. Recovery from transient
faults and the controller-reset probe are in firmware_bridge/host/recovery.py.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import platform
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from firmware_bridge.host.deploy_config import DeployConfig
from firmware_bridge.host.loop import pct
from firmware_bridge.host.recovery import Outcome, recover, reset_probe
from firmware_bridge.host.safety import SafetyConfig
from ppo_robot.cli import (
    RunFault,
    UserError,
    atomic_write_text,
    run_app,
    typed_config,
    write_summary,
)

log = logging.getLogger("deploy")


def deploy(cfg: Any) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="deploy: %(message)s")
    from envs.robots import get_robot
    from envs.spec import SpecError
    from export.runtime import PolicyError
    from firmware_bridge.wire.link import LinkError, SerialLink
    from firmware_bridge.wire.session import HandshakeError, handshake, wait_state

    if cfg.duration_s is None or cfg.duration_s <= 0:
        raise UserError(f"duration_s must be > 0, got {cfg.duration_s}")
    # ---- policy and robot spec: everything checkable before touching the port
    policy = _load_policy(cfg)
    robot, rate_hz = _robot_and_rate(cfg, policy)
    try:
        task = policy.info.task if policy is not None else None  # the policy's task
        spec = get_robot(robot, rate_hz or None, task)
        rate_hz = rate_hz or spec.control_hz
        if rate_hz <= 0:
            raise UserError(f"rate_hz must be > 0, got {rate_hz}")
        if policy is not None and cfg.source == "policy":
            policy.check(spec)
    except (SpecError, PolicyError) as e:
        raise UserError(str(e)) from None
    sc = typed_config(cfg.safety, SafetyConfig)
    source, source_meta = _make_source(cfg, spec, policy)

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


def _load_policy(cfg):
    """The ONNX policy: what source=policy runs, and where source=excitation or playback
    may take the robot and its rate from."""
    from export.runtime import OnnxPolicy, PolicyError

    if not cfg.policy:
        if cfg.source == "policy":
            raise UserError("policy: give policy=PATH (or source=playback / source=excitation)")
        return None
    try:
        return OnnxPolicy(cfg.policy)
    except PolicyError as e:
        raise UserError(str(e)) from None


def _robot_and_rate(cfg, policy) -> tuple[str, float]:
    """The robot and the control rate (0 = the spec's): robot= and rate_hz= where given,
    else the policy's metadata, else (playback) the log's robot."""
    rate_hz = float(cfg.rate_hz) if cfg.rate_hz else 0.0
    if policy is not None:
        if cfg.robot and cfg.robot != policy.info.robot:
            raise UserError(
                f"robot={cfg.robot}, but the policy {cfg.policy} is for robot '{policy.info.robot}'"
            )
        return policy.info.robot, rate_hz or policy.info.control_hz
    robot = cfg.robot or _playback_robot(cfg)
    if not robot:
        raise UserError(f"robot: give robot=NAME (or policy=PATH) with source={cfg.source}")
    return robot, rate_hz


def _playback_robot(cfg) -> str | None:
    """The robot a playback log was recorded on (so robot= may be left out)."""
    if cfg.source != "playback" or not cfg.log:
        return None
    from firmware_bridge.logs.rollout_log import LogError, read_log

    try:
        return read_log(cfg.log).run.get("robot")
    except LogError as e:
        raise UserError(str(e)) from None


def _make_source(cfg, spec, policy):
    """The command source: the ONNX policy (other sources: firmware_bridge/host/sources.py);
    its record says the run's goal, where the task has one."""
    from firmware_bridge.host.sources import make_source, task_goal

    goal = task_goal(cfg, spec)
    if cfg.source == "policy":
        act = policy.act
        source, meta = (lambda obs, sensors, tick: act(obs)), {"source": "policy"}
    else:
        source, meta = make_source(cfg, spec)
    return source, ({**meta, "goal": goal.tolist()} if goal is not None else meta)


def _run(cfg, spec, policy, source, source_meta, link, sess, sc, rate_hz) -> dict[str, Any]:
    """Log, enable, loop (with recoveries), disable, summarize. Every way out closes the
    log: a refusal at ENABLE (exit 2) without a summary, everything else with one."""
    from firmware_bridge.host.safety import SafetyLayer
    from firmware_bridge.logs.rollout_log import RolloutLog
    from firmware_bridge.wire.session import Disabled, disable

    log_path = (
        Path(cfg.log_dir) / f"{time.strftime('%Y%m%d-%H%M%S')}-{spec.name}-{os.getpid()}.mcap"
    )
    rlog = RolloutLog(log_path, _run_metadata(cfg, spec, policy, sess, rate_hz, source_meta))
    safety = SafetyLayer.for_spec(spec, sc)
    loop = _make_loop(cfg, spec, link, source, safety, rlog, rate_hz, sc, sess)
    out = Outcome()
    disabled = Disabled(False)
    try:
        with _quiet_process(loop, cfg, rlog):
            try:
                _enable_and_run(cfg, link, spec, sess, loop, rlog, safety, sc, rate_hz, out)
            finally:
                disabled = disable(link, float(cfg.ack_timeout_s))
    except BaseException:  # refused at ENABLE: nothing ran, the log holds the refusal
        rlog.event("disable", "DISABLE confirmed" if disabled else "DISABLE not confirmed")
        rlog.close()
        raise
    return _finish(cfg, spec, link, sess, rlog, out, disabled, source_meta, rate_hz)


def _run_metadata(cfg, spec, policy, sess, rate_hz, source_meta) -> dict[str, Any]:
    """The log's run record: robot, policy, controller, host, config, command source."""
    return {
        "robot": spec.name,
        "robot_layout": spec.layout(),
        "policy_path": str(Path(cfg.policy).resolve()) if policy else None,
        "policy_sha256": policy.sha256 if policy else None,
        "policy_metadata": policy.info.meta if policy else None,
        "rate_hz": rate_hz,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "controller": {
            "name": sess.info.name,
            "firmware_version": list(sess.info.firmware_version),
            "boot_id": sess.info.boot_id,
            "watchdog_ms": sess.info.watchdog_ms,
            "rate_range_hz": [sess.info.min_rate_hz, sess.info.max_rate_hz],
        },
        "port": str(cfg.port),
        "baud": int(cfg.baud),
        "host": {
            "hostname": socket.gethostname(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "pid": os.getpid(),
        },
        "start_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **source_meta,
    }


def _make_loop(cfg, spec, link, source, safety, rlog, rate_hz, sc, sess):
    """The control loop on the log's clock, with a status line on stderr if asked."""
    from firmware_bridge.host.loop import ControlLoop
    from firmware_bridge.host.sources import task_goal

    def status(s: dict) -> None:
        if cfg.status:
            print(
                f"\rdeploy t={s['t']:6.1f}s ticks={s['ticks']} missed={s['missed']} "
                f"jitter_p99={s['jitter_p99_us']:.0f}us dropped={s['dropped']}   ",
                end="",
                file=sys.stderr,
                flush=True,
            )

    return ControlLoop(
        link,
        spec,
        source,
        safety,
        rlog,
        rate_hz,
        float(cfg.duration_s),
        sc.stale_state_ms,
        sc.max_consecutive_overruns,
        clock=rlog.clock,
        spin_us=float(cfg.spin_us),
        boot_id=sess.info.boot_id,
        status=status,
        prime=bool(cfg.prime),
        goal=task_goal(cfg, spec),
    )


@contextlib.contextmanager
def _quiet_process(loop, cfg, rlog):
    """For the run: SIGINT/SIGTERM ask the loop to stop, real-time priority where granted,
    a short GIL switch interval and no cyclic garbage collection; all restored after."""
    signals = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}
    previous = {
        s: signal.signal(s, lambda signum, frame: loop.request_stop(signals[signum]))
        for s in signals
    }
    if cfg.realtime_priority:
        _realtime(int(cfg.realtime_priority), rlog)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # the logger thread must not hold the GIL across a deadline
    # No cyclic garbage collection during the run: a full collection holds the interpreter
    # for milliseconds, a missed deadline at 500 Hz; the hot path creates no cycles.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        gc.enable()
        gc.unfreeze()
        for s, h in previous.items():
            signal.signal(s, h)


def _enable_and_run(cfg, link, spec, sess, loop, rlog, safety, sc, rate_hz, out) -> None:
    """ENABLE (a refusal raises UserError), the loop, recoveries. A link that dies or an
    error of ours on the way ends the run as a fault, never as a traceback."""
    from firmware_bridge.host.loop import LoopResult
    from firmware_bridge.host.safety import SafetyFault
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
        kind = "link_lost" if isinstance(e, LinkError) else "internal_error"
        if kind == "internal_error":
            log.exception("deploy: unexpected error during the run")
        if out.res is None:
            out.res = LoopResult(sensors=np.zeros((0, spec.n_sensors)))
        out.res.fault = SafetyFault(
            kind, f"{type(e).__name__}: {e}" if kind != "link_lost" else str(e)
        )
        out.res.stopped_by = "fault"


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
    summary = _summary(spec, link, rlog, out, disabled, source_meta, rate_hz)
    rlog.close(summary)
    atomic_write_text(Path(str(rlog.path) + ".json"), json.dumps(summary) + "\n")
    write_summary(summary, None)
    if res.fault is not None:
        raise RunFault(
            f"{res.fault.kind}: {res.fault} (controller disabled: {bool(disabled)}; log {rlog.path})"
        )
    if res.stopped_by in ("SIGINT", "SIGTERM"):
        sys.stdout.flush()
        sys.exit(130 if res.stopped_by == "SIGINT" else 143)
    return summary


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


def _summary(spec, link, rlog, out, disabled, source_meta, rate_hz) -> dict[str, Any]:
    """The closing JSON line: timing, link, faults, outcome."""
    res, stats = out.res, link.parser_stats
    success = None
    if res.ticks >= spec.episode_steps * rate_hz / spec.control_hz and rate_hz == spec.control_hz:
        goal = source_meta.get("goal")
        goal = None if goal is None else np.asarray(goal)[None]
        success = bool(spec.success(res.sensors[None, : spec.episode_steps], goal)[0])
    return {
        "ticks": res.ticks,
        "rate_hz": rate_hz,
        "duration_s": round(res.ticks / rate_hz, 3),
        "missed_deadlines": res.missed_deadlines,
        "period_error_p50_us": pct(np.abs(res.period_error_us), 50),
        "period_error_p99_us": pct(np.abs(res.period_error_us), 99),
        "period_error_max_us": pct(np.abs(res.period_error_us), 100),
        "compute_p50_us": pct(res.compute_us, 50),
        "compute_p99_us": pct(res.compute_us, 99),
        "state_age_p50_ms": pct(res.state_age_ms, 50),
        "state_age_p99_ms": pct(res.state_age_ms, 99),
        "states_received": res.states_received,
        "states_out_of_order": res.states_out_of_order,
        "dropped_frames": stats.dropped_total,
        "dropped_by_kind": {
            k: v for k, v in stats.as_dict().items() if k.startswith("dropped_") and v
        },
        "limited_ticks": res.limited_ticks,
        "faults": out.faults,
        "recoveries": out.recoveries,
        "stopped_by": res.stopped_by,
        "disable_confirmed": bool(disabled),
        "log_dropped": rlog.dropped,
        "success": success,
        "source": source_meta.get("source"),
        "log": str(rlog.path),
    }


def _realtime(priority: int, rlog) -> None:
    """SCHED_FIFO for the loop's thread only (the log writer keeps normal priority).
    Needs CAP_SYS_NICE (root, or an rtprio limit in /etc/security/limits.conf)."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        rlog.event("realtime", f"control loop runs SCHED_FIFO priority {priority}")
    except (PermissionError, OSError, AttributeError) as e:
        log.warning(
            "realtime_priority=%d not granted (%s); running at normal priority", priority, e
        )
        rlog.event("realtime", f"not granted: {e}")


def main() -> None:
    run_app("deploy", deploy, DeployConfig)
