"""The steps every deploy takes, whatever carries its commands (our framed protocol to a
controller, `host.deploy`; or a servo bus straight to the servos, `host.bus_deploy`): the
policy and its robot, checked before any port is opened; the command source; the log's
run record; the loop on the log's clock; the quiet process around the run; the closing
summary and exit code.

Host floor: imports the loop, the sources and (inside functions) envs, export and logs.
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
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from firmware_bridge.host.loop import pct
from ppo_robot.cli import RunFault, UserError, atomic_write_text, write_summary

log = logging.getLogger("deploy")


# ------------------------------------------------------------------------------ inputs


def load_policy(cfg):
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


def robot_and_rate(cfg, policy) -> tuple[str, float]:
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


def checked_spec(robot: str, rate_hz: float, policy, source: str):
    """The robot's spec (the policy's task) at the run's rate, the policy checked against
    it (robot, layout hash, rate); its transport. UserError on any mismatch."""
    from envs.robots import get_robot, transport
    from envs.spec import SpecError
    from export.runtime import PolicyError

    try:
        task = policy.info.task if policy is not None else None  # the policy's task
        spec = get_robot(robot, rate_hz or None, task)
        rate_hz = rate_hz or spec.control_hz
        if rate_hz <= 0:
            raise UserError(f"rate_hz must be > 0, got {rate_hz}")
        if policy is not None and source == "policy":
            policy.check(spec)
        return spec, rate_hz, transport(robot)
    except (SpecError, PolicyError) as e:
        raise UserError(str(e)) from None


def make_source(cfg, spec, policy):
    """The command source: the ONNX policy (other sources: firmware_bridge/host/sources.py);
    its record says the run's goal, where the task has one."""
    from firmware_bridge.host.sources import make_source as other_source
    from firmware_bridge.host.sources import task_goal

    goal = task_goal(cfg, spec)
    if cfg.source == "policy":
        act = policy.act
        source, meta = (lambda obs, sensors, tick: act(obs)), {"source": "policy"}
    else:
        source, meta = other_source(cfg, spec)
    return source, ({**meta, "goal": goal.tolist()} if goal is not None else meta)


# ------------------------------------------------------------------------------ the run


def log_path(cfg, spec) -> Path:
    """This run's MCAP file in log_dir."""
    return Path(cfg.log_dir) / f"{time.strftime('%Y%m%d-%H%M%S')}-{spec.name}-{os.getpid()}.mcap"


def run_metadata(cfg, spec, policy, rate_hz, source_meta, link_meta) -> dict[str, Any]:
    """The log's run record: robot, policy, host, config, command source, and what the
    transport says of the far side (`link_meta`: the controller, or the servo bus)."""
    return {
        "robot": spec.name,
        "robot_layout": spec.layout(),
        "policy_path": str(Path(cfg.policy).resolve()) if policy else None,
        "policy_sha256": policy.sha256 if policy else None,
        "policy_metadata": policy.info.meta if policy else None,
        "rate_hz": rate_hz,
        "config": asdict(cfg),
        **link_meta,
        "port": str(cfg.port),
        "host": {
            "hostname": socket.gethostname(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "pid": os.getpid(),
        },
        "start_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **source_meta,
    }


def make_loop(cfg, spec, link, source, safety, rlog, rate_hz, sc, boot_id=None):
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
        boot_id=boot_id,
        status=status,
        prime=bool(cfg.prime),
        goal=task_goal(cfg, spec),
    )


@contextlib.contextmanager
def quiet_process(loop, cfg, rlog):
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


def run_failure(e: Exception, link_error: type, res, spec):
    """An exception out of a run (outside the loop's own fault handling) as the run's fault:
    `link_lost` for the transport's link error, else `internal_error` (logged with its
    traceback); the loop's figures so far (or none) carry it."""
    from firmware_bridge.host.loop import LoopResult
    from firmware_bridge.host.safety import SafetyFault

    kind = "link_lost" if isinstance(e, link_error) else "internal_error"
    if kind == "internal_error":
        log.exception("deploy: unexpected error during the run")
    if res is None:
        res = LoopResult(sensors=np.zeros((0, spec.n_sensors)))
    res.fault = SafetyFault(kind, f"{type(e).__name__}: {e}" if kind != "link_lost" else str(e))
    res.stopped_by = "fault"
    return res


# ------------------------------------------------------------------------------ the end


def summary(spec, rlog, out, source_meta, rate_hz, link_fields) -> dict[str, Any]:
    """The closing JSON line: timing, faults, outcome, and the transport's own figures
    (`link_fields`: frames dropped and DISABLE confirmed, or the bus's)."""
    res = out.res
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
        "limited_ticks": res.limited_ticks,
        "faults": out.faults,
        "recoveries": out.recoveries,
        "stopped_by": res.stopped_by,
        **link_fields,
        "log_dropped": rlog.dropped,
        "success": success,
        "source": source_meta.get("source"),
        "log": str(rlog.path),
    }


def end_run(rlog, summary_: dict[str, Any], res, safe_note: str) -> dict[str, Any]:
    """Close the log with the summary, save it beside the log (<log>.json), print it; then
    the exit: RunFault (exit 3) after a fault, 130 / 143 after SIGINT / SIGTERM.
    `safe_note` says how the robot was left (for the fault's one line)."""
    rlog.close(summary_)
    atomic_write_text(Path(str(rlog.path) + ".json"), json.dumps(summary_) + "\n")
    write_summary(summary_, None)
    if res.fault is not None:
        raise RunFault(f"{res.fault.kind}: {res.fault} ({safe_note}; log {rlog.path})")
    if res.stopped_by in ("SIGINT", "SIGTERM"):
        sys.stdout.flush()
        sys.exit(130 if res.stopped_by == "SIGINT" else 143)
    return summary_
