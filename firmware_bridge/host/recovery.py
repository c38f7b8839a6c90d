"""What a deploy run's faults come to: the run's outcome record, recovery from a
transient fault (disable, re-handshake, re-enable explicitly, run on), and the probe that
tells a controller reset from a silent line.

Host floor (firmware_bridge.host): imports firmware_bridge.wire and the host's loop and
safety layer; used by firmware_bridge.host.deploy, which owns the run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TRANSIENT_FAULTS = ("stale_state", "controller_watchdog", "overrun")
"""Faults a re-handshake can clear (`recover.max` > 0); all others end the run."""


@dataclass
class Outcome:
    """What a run came to: the loop's figures and the faults met on the way."""

    res: Any = None
    """The LoopResult of every loop run together (None until the first one returned)."""
    faults: list[dict[str, Any]] = field(default_factory=list)
    recoveries: int = 0
    recorded: bool = False
    """res.fault is already in `faults` and logged (a recovery that failed)."""


def recover(cfg, link, spec, sess, loop, rlog, safety, sc, rate_hz, out: Outcome) -> None:
    """Recovery from a transient fault (a stalled or noisy line, a watchdog trip): the
    controller is already safe; disable, re-handshake, re-enable explicitly, go on. Never
    after a stop was asked for (Ctrl-C, SIGTERM), and never on a controller that reset."""
    from firmware_bridge.wire.session import disable

    attempts = 0
    res = out.res
    while (
        res.fault is not None
        and res.fault.kind in TRANSIENT_FAULTS
        and attempts < int(cfg.recover.max)
        and loop.n_ticks - res.ticks > 0
        and loop.stop_requested is None
    ):
        attempts += 1
        fault = res.fault
        rlog.event("fault", f"{fault.kind}: {fault}")
        disable(link, float(cfg.ack_timeout_s))
        time.sleep(float(cfg.recover.backoff_s))
        why, got = _re_enable(cfg, link, spec, sess, loop, sc, rate_hz, out)
        if why is not None:
            rlog.event("recover_failed", why)
            out.faults.append({"kind": fault.kind, "message": str(fault), "recovered": False})
            break
        out.recoveries += 1
        out.faults.append({"kind": fault.kind, "message": str(fault), "recovered": True})
        rlog.event("recover", f"re-enabled after {fault.kind} (recovery {out.recoveries})")
        safety.reset()
        first, first_seq = got if got is not None else (None, 0)
        more = loop.run(
            first,
            first_seq,
            tick0=res.ticks,
            origin_ns=rlog.origin_ns,
            n_ticks=loop.n_ticks - res.ticks,
        )
        res = out.res = _merge(res, more)


def _re_enable(cfg, link, spec, sess, loop, sc, rate_hz, out: Outcome):
    """Handshake again and ENABLE: (None, newest STATE) when re-enabled, else (why, None).
    A controller with another boot id reset: the run's fault becomes `controller_reset`."""
    from firmware_bridge.host.safety import SafetyFault
    from firmware_bridge.wire.link import LinkError
    from firmware_bridge.wire.session import HandshakeError, enable, handshake, newest_state

    try:
        again = handshake(link, spec, rate_hz, int(cfg.baud), float(cfg.handshake_timeout_s), False)
        if again.info.boot_id != sess.info.boot_id:
            why = f"controller reset: boot id {again.info.boot_id:08x}, was {sess.info.boot_id:08x}"
            out.res.fault = SafetyFault("controller_reset", why)
            return why, None
        if loop.stop_requested is not None:  # a signal during the back-off: stay disabled
            out.recorded = True
            out.res.stopped_by = loop.stop_requested
            return f"stopped by {loop.stop_requested} during the recovery: not re-enabled", None
        enable(link, float(cfg.ack_timeout_s))
        return None, newest_state(link, sc.stale_state_ms / 1e3)
    except (HandshakeError, LinkError) as e:
        out.recorded = True  # the run ends by the fault that could not be recovered
        return str(e), None


def _merge(a, b):
    """Concatenate the figures of two loop runs (before and after a recovery)."""
    from firmware_bridge.host.loop import LoopResult

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


def reset_probe(link, boot_id: int, fault):
    """After the STATE stream stopped, ask the controller who it is (HELLO 0, which also
    ends the stream): a new boot id means it reset mid-run. A controller streams only after
    a HELLO, so a reset shows on the host as a silent line, not as a STATE seq going back."""
    from firmware_bridge.host.safety import SafetyFault
    from firmware_bridge.wire.link import LinkError
    from firmware_bridge.wire.protocol import Hello, Info

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
