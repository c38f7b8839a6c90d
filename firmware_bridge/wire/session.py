"""A host session with a controller: handshake and checks, enable, disable.

Everything that can be refused is refused here, before ENABLE and before any COMMAND:
a controller that never answers, another robot, other sensor or actuator counts, a rate
outside the controller's range or beyond the link budget, a rate whose period the
controller's watchdog or the host's stale-state limit cannot wait through.

ENABLE and DISABLE count as answered only by the ACK of the very message sent (its seq);
`disable` never raises: a link that dies while DISABLE is in flight is reported, not thrown.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from firmware_bridge.wire.link import (
    LinkBudgetError,
    LinkError,
    SerialLink,
    check_link_budget,
    latency_warning,
)
from firmware_bridge.wire.protocol import (
    PROTOCOL_VERSION,
    Ack,
    Disable,
    Enable,
    Fault,
    Hello,
    Info,
    MsgType,
    State,
    Status,
)

log = logging.getLogger(__name__)


class HandshakeError(RuntimeError):
    """The controller or the link cannot run this policy: nothing was enabled."""


@dataclass
class SessionInfo:
    info: Info
    rate_hz: float
    budget_utilisation: float
    latency_warning: str | None


def handshake(
    link: SerialLink,
    spec,
    rate_hz: float,
    baud: int,
    timeout_s: float = 2.0,
    check_budget: bool = True,
    stale_state_ms: float | None = None,
) -> SessionInfo:
    """HELLO -> INFO; check the controller against the robot spec, the link budget, and
    the control period against the controller's watchdog and the host's `stale_state_ms`."""
    rate = int(round(rate_hz))
    if abs(rate - rate_hz) > 1e-9:
        raise HandshakeError(f"rate_hz={rate_hz} must be a whole number of Hz on the wire")
    if check_budget:
        try:
            budget = check_link_budget(baud, rate_hz, spec.n_sensors, spec.n_actuators)
        except LinkBudgetError as e:
            raise HandshakeError(str(e)) from None
        util = budget.utilisation
    else:
        util = float("nan")
    link.poll()  # discard whatever was buffered before we spoke
    info = None
    # Ask twice within the timeout: the first HELLO may land in a half-read frame.
    deadline = time.monotonic() + timeout_s
    while info is None and time.monotonic() < deadline:
        link.send(b"\x00")  # end any partial frame in the controller's receiver
        link.send_message(Hello(rate))
        info = link.wait_for(
            lambda m: isinstance(m, Info), min(timeout_s / 2, deadline - time.monotonic())
        )
    if info is None:
        stats = link.parser_stats
        garbage = stats.dropped_total or stats.bytes_discarded
        hint = (
            f"; received {link.bytes_in} bytes of garbage (wrong baud?)"
            if garbage
            else "; received nothing"
        )
        raise HandshakeError(
            f"controller on {link.port} did not answer HELLO within {timeout_s:g} s{hint}"
        )
    assert isinstance(info, Info)
    if info.protocol_version != PROTOCOL_VERSION:
        raise HandshakeError(
            f"controller speaks protocol v{info.protocol_version}, this host v{PROTOCOL_VERSION}"
        )
    if info.name != spec.name:
        raise HandshakeError(
            f"controller reports robot '{info.name}', the policy is for '{spec.name}'"
        )
    if info.n_sensors != spec.n_sensors:
        raise HandshakeError(
            f"controller reports {info.n_sensors} sensors, robot '{spec.name}' has {spec.n_sensors}"
        )
    if info.n_actuators != spec.n_actuators:
        raise HandshakeError(
            f"controller reports {info.n_actuators} actuators, robot '{spec.name}' has {spec.n_actuators}"
        )
    if not info.min_rate_hz <= rate <= info.max_rate_hz:
        raise HandshakeError(
            f"rate {rate} Hz is outside the controller's range {info.min_rate_hz}..{info.max_rate_hz} Hz"
        )
    check_period(rate_hz, info.watchdog_ms, stale_state_ms)
    warn = latency_warning(link.port, rate_hz) if link.port.startswith("/dev/") else None
    if warn:
        log.warning(warn)
    return SessionInfo(info, rate_hz, util, warn)


def check_period(rate_hz: float, watchdog_ms: float, stale_state_ms: float | None) -> None:
    """Refuse a control period the safety deadlines cannot wait through: with a period of
    at least the controller's watchdog (or the host's stale-state limit) every tick would
    trip it, so the run would fault as soon as it started."""
    period_ms = 1000.0 / rate_hz
    limits = [(f"the controller's watchdog of {watchdog_ms:g} ms", float(watchdog_ms))]
    if stale_state_ms is not None:
        limits.append((f"safety.stale_state_ms={stale_state_ms:g}", float(stale_state_ms)))
    for what, limit_ms in limits:
        if period_ms >= limit_ms:
            raise HandshakeError(
                f"rate {rate_hz:g} Hz: its period of {period_ms:g} ms is not shorter than "
                f"{what}, so every tick would trip it (use a rate above {1000.0 / limit_ms:g} Hz)"
            )


def wait_state(link: SerialLink, timeout_s: float) -> State | None:
    """First STATE of the stream (the controller streams after HELLO)."""
    m = link.wait_for(lambda m: isinstance(m, State), timeout_s)
    return m if isinstance(m, State) else None


def newest_state(link: SerialLink, timeout_s: float) -> tuple[State, int] | None:
    """Poll until at least one STATE arrived; the newest of them, with its seq."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = [(m, seq) for seq, m in link.poll() if isinstance(m, State)]
        if got:
            return got[-1]
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.0002)


def enable(link: SerialLink, timeout_s: float = 0.5) -> None:
    """Send ENABLE; return once the controller acknowledged that very ENABLE (its seq)."""
    seq = link.send_message(Enable())
    ack = link.wait_for(
        lambda m: (
            (isinstance(m, Ack) and m.acked_type == MsgType.ENABLE and m.acked_seq == seq)
            or isinstance(m, Fault)
        ),
        timeout_s,
    )
    if ack is None:
        raise HandshakeError(f"controller did not acknowledge ENABLE within {timeout_s:g} s")
    if isinstance(ack, Fault):
        raise HandshakeError(f"controller refused ENABLE: fault {ack.code} {ack.text!r}")
    if ack.result != 0:
        raise HandshakeError(
            f"controller refused ENABLE (seq {seq}): latched fault {int(ack.result)}"
        )


@dataclass
class Disabled:
    """How a DISABLE ended: confirmed, or why not (`link_lost` names a dead link)."""

    confirmed: bool
    link_lost: str | None = None
    """The link error that ended the attempt, when the port went away (a pulled cable)."""

    def __bool__(self) -> bool:
        return self.confirmed


def disable(link: SerialLink, timeout_s: float = 0.5, tries: int = 3) -> Disabled:
    """Send DISABLE until one is acknowledged (the ACK of a DISABLE this call sent) or a STATE
    shows the actuators disarmed. Never raises: a link that fails while sending or waiting
    ends the attempt with `link_lost` set."""
    sent: set[int] = set()

    def answered(m) -> bool:
        if isinstance(m, Ack):
            return m.acked_type == MsgType.DISABLE and m.acked_seq in sent
        return isinstance(m, State) and not (Status(m.status) & Status.ENABLED)

    for _ in range(tries):
        try:
            link.send(b"\x00")
            sent.add(link.send_message(Disable()))
            if link.wait_for(answered, timeout_s) is not None:
                return Disabled(True)
        except LinkError as e:  # the port went away: the controller's watchdog makes it safe
            return Disabled(False, str(e))
    return Disabled(False)
