"""The controller side of the protocol in Python: the state machine that sim_robot runs.

Mirrors what the reference firmware does (docs/protocol.md, "Safety on the controller"):
actuators armed only by ENABLE, disarmed by HELLO and DISABLE; COMMAND applied only while
enabled and only when finite and inside the actuator limits (else fault BAD_COMMAND);
a watchdog on the controller's own clock that puts the actuators in their safe state when
no valid COMMAND arrives within `watchdog_ms` (the spec's `safe_command_for` of the newest
readings, latched when the safe state is entered: a fixed command, hold the measured pose,
or NaN = torque off, which the simulated plant turns into a limp actuator); while armed,
a sensor reading outside its safe range (or not finite) raises LIMIT, as the C firmware's `check_sensor_limits` does;
faults latched until DISABLE.

Time is injected (`now_us` arguments), so the state machine is tested on a virtual clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from firmware_bridge.wire.protocol import (
    PROTOCOL_VERSION,
    Ack,
    Command,
    Disable,
    Enable,
    Fault,
    FaultCode,
    FrameParser,
    Hello,
    Info,
    Message,
    MsgType,
    State,
    Status,
    encode,
)

log = logging.getLogger(__name__)

NO_COMMAND = 0xFFFFFFFF


@dataclass(frozen=True)
class ControllerConfig:
    name: str
    n_sensors: int
    n_actuators: int
    low: np.ndarray
    high: np.ndarray
    safe: np.ndarray
    min_rate_hz: int = 10
    max_rate_hz: int = 2000
    watchdog_ms: int = 50
    firmware_version: tuple[int, int, int] = (1, 0, 0)
    boot_id: int = 1
    sensor_min: np.ndarray | None = None
    """Safe range of each sensor (LIMIT outside it while armed); None = unchecked. As in the
    C firmware, a sensor whose min is not below its max is unchecked."""
    sensor_max: np.ndarray | None = None
    safe_for: Callable[[np.ndarray], np.ndarray] | None = None
    """Readings -> safe command (the spec's `safe_command_for`: hold the measured pose, NaN =
    torque off); None = `safe`. Evaluated once when the safe state is entered."""

    @classmethod
    def for_spec(cls, spec, **kw) -> ControllerConfig:
        """The controller of a robot spec: its name, counts, limits, safe command and the
        sensors' safe envelope; `kw` sets the rest (rates, watchdog, boot id)."""
        return cls(
            name=spec.name,
            n_sensors=spec.n_sensors,
            n_actuators=spec.n_actuators,
            low=spec.command_low,
            high=spec.command_high,
            safe=spec.safe_command,
            sensor_min=spec.sensor_low,
            sensor_max=spec.sensor_high,
            safe_for=spec.safe_command_for,
            **kw,
        )


class Controller:
    """Protocol state machine; `write` sends bytes to the host."""

    def __init__(self, cfg: ControllerConfig, write: Callable[[bytes], None]) -> None:
        self.cfg = cfg
        self.write = write
        self.parser = FrameParser(n_actuators=cfg.n_actuators)
        self.seq = 0
        self.enabled = False
        self.fault = FaultCode.NONE
        self.watchdog_tripped = False
        self.rate_hz = 0
        self.next_state_us = 0
        self.last_cmd_us = 0
        self.last_cmd_seq = NO_COMMAND
        self.command = cfg.safe.astype(np.float64).copy()
        self.last_sensors: np.ndarray | None = None
        """The newest readings (what a 'hold' safe state holds)."""
        self.commands_applied = 0
        self.watchdog_trips = 0
        self.faults_raised = 0
        self.hellos = 0
        self.on_apply: Callable[[int, np.ndarray], None] | None = None
        """Called with (seq, values) of every COMMAND applied (sim_robot's applied_log)."""

    # ------------------------------------------------------------------ helpers

    def _send(self, msg: Message) -> None:
        self.write(encode(msg, self.seq))
        self.seq = (self.seq + 1) & 0xFFFFFFFF

    @property
    def status(self) -> Status:
        s = Status(0)
        if self.enabled:
            s |= Status.ENABLED
        if self.watchdog_tripped:
            s |= Status.WATCHDOG
        if self.fault != FaultCode.NONE:
            s |= Status.FAULTED
        if self.rate_hz:
            s |= Status.STREAMING
        return s

    @property
    def rx_errors(self) -> int:
        return min(self.parser.stats.dropped_total, 0xFFFF)

    def safe_state(self, sensors: np.ndarray | None = None) -> None:
        """Disarm; the command becomes the safe command for `sensors` (default: the newest
        readings; none yet: the fixed safe command). NaN entries mean torque off."""
        self.enabled = False
        if sensors is not None:
            self.last_sensors = np.array(sensors, dtype=np.float64)
        if self.cfg.safe_for is not None and self.last_sensors is not None:
            self.command[:] = self.cfg.safe_for(self.last_sensors)
        else:
            self.command[:] = self.cfg.safe

    def raise_fault(self, code: FaultCode, now_us: int, text: str) -> None:
        self.safe_state()
        if self.fault == FaultCode.NONE:
            self.fault = code
            self.faults_raised += 1
            log.warning("fault %s at t=%.3f s: %s", code.name, now_us / 1e6, text)
            self._send(Fault(code, now_us, text[:48]))

    # ------------------------------------------------------------------ inputs

    def receive(self, data: bytes, now_us: int) -> None:
        for seq, msg in self.parser.feed(data):
            self.handle(seq, msg, now_us)

    def handle(self, seq: int, msg: Message, now_us: int) -> None:
        cfg = self.cfg
        if isinstance(msg, Command):
            if not self.enabled:
                return
            v = msg.values
            if v.size != cfg.n_actuators or not np.all(np.isfinite(v)):
                self.raise_fault(FaultCode.BAD_COMMAND, now_us, "command not finite")
                return
            if np.any(v < cfg.low) or np.any(v > cfg.high):
                self.raise_fault(FaultCode.BAD_COMMAND, now_us, "command outside limits")
                return
            self.command[:] = v
            self.last_cmd_us = now_us
            self.last_cmd_seq = seq
            self.commands_applied += 1
            if self.on_apply is not None:
                self.on_apply(seq, v)
        elif isinstance(msg, Hello):
            self.hellos += 1
            if self.enabled:
                log.info("HELLO while enabled: disarming")
            self.safe_state()
            ok = msg.state_rate_hz == 0 or cfg.min_rate_hz <= msg.state_rate_hz <= cfg.max_rate_hz
            self.rate_hz = msg.state_rate_hz if ok else 0
            self.next_state_us = now_us
            self._send(
                Info(
                    PROTOCOL_VERSION,
                    cfg.firmware_version,
                    cfg.boot_id,
                    cfg.n_sensors,
                    cfg.n_actuators,
                    cfg.min_rate_hz,
                    cfg.max_rate_hz,
                    cfg.watchdog_ms,
                    cfg.name,
                )
            )
            log.info("HELLO: streaming STATE at %d Hz", self.rate_hz)
        elif isinstance(msg, Enable):
            if self.fault != FaultCode.NONE:
                self._send(Ack(seq, MsgType.ENABLE, self.fault))
                return
            self.enabled = True
            self.watchdog_tripped = False
            self.last_cmd_us = now_us
            self._send(Ack(seq, MsgType.ENABLE, FaultCode.NONE))
            log.info("ENABLE at t=%.3f s", now_us / 1e6)
        elif isinstance(msg, Disable):
            self.safe_state()
            self.fault = FaultCode.NONE
            self._send(Ack(seq, MsgType.DISABLE, FaultCode.NONE))
            log.info("DISABLE at t=%.3f s", now_us / 1e6)

    # ------------------------------------------------------------------ time

    def check_sensor_limits(self, sensors: np.ndarray, now_us: int) -> None:
        """LIMIT on the first sensor outside its safe range (the C firmware's text)."""
        lo, hi = self.cfg.sensor_min, self.cfg.sensor_max
        if lo is None or hi is None:
            return
        bad = (lo < hi) & ~((sensors >= lo) & (sensors <= hi))
        if bad.any():
            i = int(np.argmax(bad))
            self.raise_fault(FaultCode.LIMIT, now_us, f"sensor {i} outside its safe range")

    def poll(self, now_us: int, read_sensors: Callable[[], np.ndarray]) -> bool:
        """Watchdog, then a STATE if one is due (sensors read, then checked while armed, as
        the firmware's `send_state`). Returns True when a STATE was sent."""
        if self.enabled and now_us - self.last_cmd_us > self.cfg.watchdog_ms * 1000:
            self.watchdog_tripped = True
            self.watchdog_trips += 1
            since = (now_us - self.last_cmd_us) / 1000
            self.raise_fault(FaultCode.WATCHDOG, now_us, f"no command for {since:.1f} ms")
        if self.rate_hz and now_us >= self.next_state_us:
            period = 1_000_000 / self.rate_hz
            self.next_state_us += period
            if now_us - self.next_state_us > period:  # fell behind: do not burst
                self.next_state_us = now_us + period
            sensors = read_sensors()
            if self.last_sensors is None:
                self.last_sensors = np.array(sensors, dtype=np.float64)
            else:
                self.last_sensors[:] = sensors
            if self.enabled:
                self.check_sensor_limits(sensors, now_us)
            self._send(
                State(now_us, self.status, self.fault, self.last_cmd_seq, self.rx_errors, sensors)
            )
            return True
        return False
