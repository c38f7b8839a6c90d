"""What the controller reported, as the fault proxy saw it: `ControllerView` reads the intact
controller -> host frames (before any fault is injected) and keeps the STATE count, the
armed/disarmed transitions, the FAULTs and the controller's clock offset, on the proxy's
clock. Tests and benchmarks read it to say when the controller went safe. Tools floor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from firmware_bridge.wire.protocol import MsgType, State, Status


@dataclass
class ControllerView:
    """What the controller reported, from the intact frames the proxy saw (proxy clock)."""

    states: int = 0
    enabled: bool | None = None
    transitions: list[tuple[float, bool]] = field(default_factory=list)
    """(time, enabled) whenever STATE.status ENABLED changed."""
    faults: list[tuple[float, int, str]] = field(default_factory=list)
    """(time, code, text) of every FAULT message."""
    last_state: State | None = None
    clock_offset: float | None = None
    """min over STATEs of (proxy time - controller t_us): proxy clock = controller clock +
    this (to within the shortest transit time)."""

    def see(self, now: float, msg: Any) -> None:
        """One intact message from the controller, received at proxy-clock time now."""
        if isinstance(msg, State):
            self.states += 1
            self.last_state = msg
            off = now - msg.t_us / 1e6
            self.clock_offset = off if self.clock_offset is None else min(self.clock_offset, off)
            en = bool(Status(msg.status) & Status.ENABLED)
            if en != self.enabled:
                self.transitions.append((now, en))
                self.enabled = en
        elif msg.TYPE == MsgType.FAULT:
            self.faults.append((now, int(msg.code), msg.text))

    def disarmed_after(self, t: float) -> float | None:
        """Proxy-clock time of the first STATE at or after t that shows the actuators
        disarmed (after having been armed), None if none came."""
        for when, en in self.transitions:
            if when >= t and not en:
                return when
        return None

    def controller_time(self, t: float) -> float | None:
        """A proxy-clock time on the controller's clock (seconds since its boot)."""
        return None if self.clock_offset is None else t - self.clock_offset
