"""`python -m firmware_bridge.deploy policy=PATH port=PATH_OR_URL [rate_hz=R] [duration_s=D] [log_dir=DIR]`

Runs an exported policy on the robot's controller: handshake, checks the controller's
INFO against the policy's metadata (a mismatch is refused before anything is enabled),
enables, runs the fixed-rate loop, disables. Every tick is logged to an MCAP file as the
run goes. Ends with one JSON line of timing and fault figures (also saved in the log and
beside it as <log>.json).

Exit codes: 0 run completed; 2 bad input or refused before enable (no COMMAND sent);
3 the run ended by fault (controller left in its safe state, log whole);
130 / 143 stopped by SIGINT / SIGTERM (DISABLE sent and confirmed first).
"""

from __future__ import annotations

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

from firmware_bridge.loop import pct
from ppo_robot.cli import RunFault, UserError, atomic_write_text, run_app, write_summary

log = logging.getLogger("deploy")


def deploy(cfg: Any) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="deploy: %(message)s")
    from envs.robots import get_robot
    from envs.spec import SpecError
    from export.runtime import OnnxPolicy, PolicyError
    from firmware_bridge.link import LinkError, SerialLink
    from firmware_bridge.safety import SafetyConfig
    from firmware_bridge.session import HandshakeError, handshake, wait_state

    if cfg.duration_s is None or cfg.duration_s <= 0:
        raise UserError(f"duration_s must be > 0, got {cfg.duration_s}")
    # ---- policy and robot spec: everything checkable before touching the port
    policy = None
    if cfg.source == "policy":
        if not cfg.policy:
            raise UserError("policy: give policy=PATH (or source=playback / source=excitation)")
        try:
            policy = OnnxPolicy(cfg.policy)
        except PolicyError as e:
            raise UserError(str(e)) from None
        robot = policy.info.robot
        rate_hz = float(cfg.rate_hz) if cfg.rate_hz else policy.info.control_hz
    else:
        robot = cfg.robot or _playback_robot(cfg)
        if not robot:
            raise UserError(f"robot: give robot=NAME with source={cfg.source}")
        rate_hz = float(cfg.rate_hz) if cfg.rate_hz else 0.0
    try:
        spec = get_robot(robot, rate_hz or None)
        rate_hz = rate_hz or spec.control_hz
        if rate_hz <= 0:
            raise UserError(f"rate_hz must be > 0, got {rate_hz}")
        if policy is not None:
            policy.check(spec)
    except (SpecError, PolicyError) as e:
        raise UserError(str(e)) from None
    sc = SafetyConfig(**OmegaConf.to_container(cfg.safety, resolve=True))
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


def _playback_robot(cfg) -> str | None:
    """The robot a playback log was recorded on (so robot= may be left out)."""
    if cfg.source != "playback" or not cfg.log:
        return None
    from firmware_bridge.rollout_log import LogError, read_log

    try:
        return read_log(cfg.log).run.get("robot")
    except LogError as e:
        raise UserError(str(e)) from None


def _make_source(cfg, spec, policy):
    """The command source: the ONNX policy (other sources: firmware_bridge/sources.py)."""
    if cfg.source == "policy":
        act = policy.act
        return (lambda obs, sensors, tick: act(obs)), {"source": "policy"}
    from firmware_bridge.sources import make_source

    return make_source(cfg, spec)


def _run(cfg, spec, policy, source, source_meta, link, sess, sc, rate_hz) -> dict[str, Any]:
    from firmware_bridge.link import LinkError
    from firmware_bridge.loop import ControlLoop
    from firmware_bridge.rollout_log import RolloutLog
    from firmware_bridge.safety import SafetyFault, SafetyLayer
    from firmware_bridge.session import HandshakeError, disable, enable, handshake, newest_state

    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_path = Path(cfg.log_dir) / f"{stamp}-{spec.name}-{os.getpid()}.mcap"
    metadata = {
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
    rlog = RolloutLog(log_path, metadata)
    safety = SafetyLayer(spec.command_low, spec.command_high, spec.safe_command, sc)

    def status(s: dict) -> None:
        if cfg.status:
            print(
                f"\rdeploy t={s['t']:6.1f}s ticks={s['ticks']} missed={s['missed']} "
                f"jitter_p99={s['jitter_p99_us']:.0f}us dropped={s['dropped']}   ",
                end="",
                file=sys.stderr,
                flush=True,
            )

    loop = ControlLoop(
        link,
        spec,
        source,
        safety,
        rlog,
        rate_hz,
        float(cfg.duration_s),
        sc.stale_state_ms,
        sc.max_consecutive_overruns,
        spin_us=float(cfg.spin_us),
        boot_id=sess.info.boot_id,
        status=status,
        prime=bool(cfg.prime),
    )
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
    res = None
    disabled = False
    faults: list[dict[str, Any]] = []
    recoveries = 0
    attempts = 0
    recorded = False  # res.fault already in `faults` and logged (a recovery that failed)
    try:
        try:
            enable(link, float(cfg.ack_timeout_s))
        except (HandshakeError, LinkError) as e:
            rlog.event("refused", str(e))
            raise UserError(str(e)) from None
        rlog.event("enable", f"enabled at {rate_hz:g} Hz")
        got = newest_state(link, sc.stale_state_ms / 1e3)
        first, first_seq = got if got is not None else (None, 0)
        res = loop.run(first, first_seq)
        origin = loop.started_ns
        # Recovery from a transient fault (a stalled or noisy line, a watchdog trip): the
        # controller is already safe; disable, re-handshake, re-enable explicitly, go on.
        while (
            res.fault is not None
            and res.fault.kind in TRANSIENT_FAULTS
            and attempts < int(cfg.recover.max)
            and loop.n_ticks - res.ticks > 0
        ):
            attempts += 1
            fault = res.fault
            rlog.event("fault", f"{fault.kind}: {fault}")
            disable(link, float(cfg.ack_timeout_s))
            time.sleep(float(cfg.recover.backoff_s))
            try:
                again = handshake(
                    link, spec, rate_hz, int(cfg.baud), float(cfg.handshake_timeout_s), False
                )
                if again.info.boot_id != sess.info.boot_id:
                    why = (
                        f"controller reset: boot id {again.info.boot_id:08x}, "
                        f"was {sess.info.boot_id:08x}"
                    )
                    res.fault = SafetyFault("controller_reset", why)
                else:
                    why = None
                    enable(link, float(cfg.ack_timeout_s))
                    got = newest_state(link, sc.stale_state_ms / 1e3)
            except (HandshakeError, LinkError) as e:
                why = str(e)
                recorded = True  # the run ends by the fault that could not be recovered
            if why is not None:
                rlog.event("recover_failed", why)
                faults.append({"kind": fault.kind, "message": str(fault), "recovered": False})
                break
            recoveries += 1
            faults.append({"kind": fault.kind, "message": str(fault), "recovered": True})
            rlog.event("recover", f"re-enabled after {fault.kind} (recovery {recoveries})")
            safety.reset()
            first, first_seq = got if got is not None else (None, 0)
            more = loop.run(
                first,
                first_seq,
                tick0=res.ticks,
                origin_ns=origin,
                n_ticks=loop.n_ticks - res.ticks,
            )
            res = _merge(res, more)
    finally:
        disabled = disable(link, float(cfg.ack_timeout_s))
        sys.setswitchinterval(interval)
        gc.enable()
        gc.unfreeze()
        for s, h in previous.items():
            signal.signal(s, h)
        if res is None:
            rlog.event("disable", f"disabled={disabled}")
            rlog.close()
    if cfg.status:
        print(file=sys.stderr)
    if res.fault is not None and res.fault.kind == "stale_state":
        res.fault = _reset_probe(link, sess.info.boot_id, res.fault)
        recorded = recorded and res.fault.kind == "stale_state"
    if res.fault is not None and not recorded:
        faults.append({"kind": res.fault.kind, "message": str(res.fault), "recovered": False})
        rlog.event("fault", f"{res.fault.kind}: {res.fault}")
    stats = link.parser_stats
    if stats.dropped_total or res.states_out_of_order:  # counted, never silent
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
    rlog.event("disable", "DISABLE confirmed" if disabled else "DISABLE not confirmed")
    success = None
    if res.ticks >= spec.episode_steps * rate_hz / spec.control_hz and rate_hz == spec.control_hz:
        success = bool(spec.success(res.sensors[None, : spec.episode_steps])[0])
    summary = {
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
        "faults": faults,
        "recoveries": recoveries,
        "stopped_by": res.stopped_by,
        "disable_confirmed": disabled,
        "log_dropped": rlog.dropped,
        "success": success,
        "source": source_meta.get("source"),
        "log": str(rlog.path),
    }
    rlog.close(summary)
    atomic_write_text(Path(str(rlog.path) + ".json"), json.dumps(summary) + "\n")
    write_summary(summary, None)
    if res.fault is not None:
        raise RunFault(
            f"{res.fault.kind}: {res.fault} (controller disabled: {disabled}; log {rlog.path})"
        )
    if res.stopped_by in ("SIGINT", "SIGTERM"):
        sys.stdout.flush()
        sys.exit(130 if res.stopped_by == "SIGINT" else 143)
    return summary


def _reset_probe(link, boot_id: int, fault):
    """After the STATE stream stopped, ask the controller who it is (HELLO 0, which also
    ends the stream): a new boot id means it reset mid-run. A controller streams only after
    a HELLO, so a reset shows on the host as a silent line, not as a STATE seq going back."""
    from firmware_bridge.link import LinkError
    from firmware_bridge.protocol import Hello, Info
    from firmware_bridge.safety import SafetyFault

    try:
        link.send(b"\x00")
        link.send_message(Hello(0))
        info = link.wait_for(lambda m: isinstance(m, Info), 0.3)
    except LinkError:
        return fault
    if isinstance(info, Info) and info.boot_id != boot_id:
        return SafetyFault(
            "controller_reset",
            f"controller reset: boot id {info.boot_id:08x}, was {boot_id:08x} ({fault})",
        )
    return fault


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


TRANSIENT_FAULTS = ("stale_state", "controller_watchdog", "overrun")
"""Faults a re-handshake can clear (`recover.max` > 0); all others end the run."""


def _merge(a, b):
    """Concatenate the figures of two loop runs (before and after a recovery)."""
    from firmware_bridge.loop import LoopResult

    return LoopResult(
        ticks=a.ticks + b.ticks,
        missed_deadlines=a.missed_deadlines + b.missed_deadlines,
        period_error_us=np.concatenate([a.period_error_us, b.period_error_us]),
        compute_us=np.concatenate([a.compute_us, b.compute_us]),
        state_age_ms=np.concatenate([a.state_age_ms, b.state_age_ms]),
        states_received=a.states_received + b.states_received,
        states_out_of_order=a.states_out_of_order + b.states_out_of_order,
        limited_ticks=a.limited_ticks + b.limited_ticks,
        fault=b.fault,
        stopped_by=b.stopped_by,
        sensors=np.concatenate([a.sensors, b.sensors]),
    )


def main() -> None:
    run_app("deploy", deploy)


if __name__ == "__main__":
    main()
