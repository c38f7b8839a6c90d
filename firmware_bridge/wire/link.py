"""The serial link to the controller, and the checks made before trusting one.

Owns the port (opened by pyserial URL: a device path, a pseudo-terminal, `socket://host:port`
or `loop://`), non-blocking reads fed to a `FrameParser`, frame writes and byte counters;
plus the link budget (can this baud rate carry this control rate?) and the USB latency
checks. It owns no timing loop: `wait_for` takes its clock and sleep from the caller.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import serial

from firmware_bridge.wire.protocol import (
    FrameParser,
    Message,
    MsgType,
    ParserStats,
    encode,
    frame_size,
)

log = logging.getLogger(__name__)

BITS_PER_BYTE = 10
"""A UART byte on the wire in 8N1: start bit, 8 data bits, stop bit."""
DEFAULT_BAUD = 115_200
_READ_CHUNK = 4096
_SYSFS = Path("/sys")


class LinkError(Exception):
    """The port cannot be opened or used; the message is one line and names the port."""


class LinkBudgetError(ValueError):
    """The baud rate cannot carry STATE and COMMAND at the requested rate."""


# ------------------------------------------------------------------------------ opening


def _open_error(port: str, err: Exception) -> LinkError:
    code = getattr(err, "errno", None)
    if code == errno.ENOENT:
        return LinkError(f"serial port {port} does not exist (is the board plugged in?)")
    if code in (errno.EACCES, errno.EPERM):
        return LinkError(
            f"permission denied opening serial port {port} "
            "(on Linux, add your user to the dialout group and log in again)"
        )
    if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY):
        return LinkError(f"serial port {port} is busy: another program has it open")
    if "Could not configure port" in str(err):
        return LinkError(f"{port} is not a serial port ({err})")
    return LinkError(f"could not open serial port {port}: {err}")


def open_serial(
    url: str,
    baudrate: int = DEFAULT_BAUD,
    *,
    exclusive: bool = True,
    write_timeout_s: float | None = 0.5,
) -> serial.SerialBase:
    """Open a pyserial port by URL, non-blocking (timeout=0); LinkError if it cannot be.

    exclusive takes an advisory flock on POSIX device ports so that a second program (or a
    second bridge) cannot open the same port; URL handlers without a lock ignore it.
    """
    try:
        ser = serial.serial_for_url(
            url, baudrate=baudrate, timeout=0, write_timeout=write_timeout_s, do_not_open=True
        )
    except (ValueError, serial.SerialException) as err:
        raise LinkError(f"cannot use serial port {url}: {err}") from None
    if exclusive and os.name == "posix" and isinstance(ser, serial.Serial):
        ser.exclusive = True
    try:
        ser.open()
    except (serial.SerialException, OSError) as err:
        raise _open_error(url, err) from None
    return ser


def request_low_latency(ser: serial.SerialBase) -> bool:
    """Ask the driver for low-latency mode (Linux ASYNC_LOW_LATENCY); True if it took.

    Never raises: ports without the setting (pseudo-terminals, sockets, loop://, other
    systems) return False.
    """
    setter = getattr(ser, "set_low_latency_mode", None)
    if setter is None:
        return False
    try:
        setter(True)
    except Exception as err:  # the driver's refusal is information, not an error
        log.debug("low-latency mode not available on %s: %s", getattr(ser, "port", ser), err)
        return False
    return True


def _latency_timer_path(port_path: str, sysfs: Path) -> Path | None:
    if "://" in port_path:
        return None
    name = Path(os.path.realpath(port_path)).name  # /dev/serial/by-id/... -> ttyUSB0
    return sysfs / "bus" / "usb-serial" / "devices" / name / "latency_timer"


def usb_latency_timer_ms(port_path: str, *, sysfs: Path = _SYSFS) -> int | None:
    """The USB-serial latency timer of a port in ms (FTDI and kin), None if it has none."""
    path = _latency_timer_path(port_path, sysfs)
    if path is None:
        return None
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def latency_warning(port_path: str, rate_hz: float, *, sysfs: Path = _SYSFS) -> str | None:
    """A warning when the port's USB latency timer is longer than the control period."""
    timer_ms = usb_latency_timer_ms(port_path, sysfs=sysfs)
    period_ms = 1000.0 / rate_hz
    if timer_ms is None or timer_ms <= period_ms:
        return None
    return (
        f"USB latency timer of {port_path} is {timer_ms} ms, longer than the {period_ms:g} ms "
        f"control period at {rate_hz:g} Hz, so STATE can arrive late; set it to 1 ms with "
        f"`echo 1 | sudo tee {_latency_timer_path(port_path, sysfs)}`"
    )


# ------------------------------------------------------------------------------ budget


@dataclass(frozen=True)
class LinkBudget:
    """What one control rate asks of a UART, each way (docs/protocol.md, Link budget)."""

    baud: int
    rate_hz: float
    state_frame_bytes: int
    """Encoded STATE frame, COBS overhead and delimiter included (controller -> host)."""
    command_frame_bytes: int
    """Encoded COMMAND frame (host -> controller)."""
    state_bits_per_s: float
    command_bits_per_s: float

    @property
    def state_utilisation(self) -> float:
        return self.state_bits_per_s / self.baud

    @property
    def command_utilisation(self) -> float:
        return self.command_bits_per_s / self.baud

    @property
    def utilisation(self) -> float:
        """The busier direction's share of the baud rate; above 1 does not fit."""
        return max(self.state_utilisation, self.command_utilisation)

    @property
    def fits(self) -> bool:
        return self.utilisation <= 1.0

    @property
    def max_rate_hz(self) -> float:
        """Highest rate this baud rate carries with these frames."""
        return self.baud / (BITS_PER_BYTE * max(self.state_frame_bytes, self.command_frame_bytes))


def link_budget(baud: int, rate_hz: float, n_sensors: int, n_actuators: int) -> LinkBudget:
    """The link budget of streaming STATE and COMMAND at rate_hz over a UART at baud."""
    if baud <= 0 or rate_hz <= 0:
        raise ValueError(f"baud and rate must be positive, got {baud} baud and {rate_hz} Hz")
    state = frame_size(MsgType.STATE, n_sensors=n_sensors)
    command = frame_size(MsgType.COMMAND, n_actuators=n_actuators)
    return LinkBudget(
        baud=baud,
        rate_hz=rate_hz,
        state_frame_bytes=state,
        command_frame_bytes=command,
        state_bits_per_s=rate_hz * state * BITS_PER_BYTE,
        command_bits_per_s=rate_hz * command * BITS_PER_BYTE,
    )


def check_link_budget(baud: int, rate_hz: float, n_sensors: int, n_actuators: int) -> LinkBudget:
    """The link budget, or LinkBudgetError naming the rate, the baud and the figure needed."""
    budget = link_budget(baud, rate_hz, n_sensors, n_actuators)
    if not budget.fits:
        if budget.state_bits_per_s >= budget.command_bits_per_s:
            what, needed, size = "STATE", budget.state_bits_per_s, budget.state_frame_bytes
        else:
            what, needed, size = "COMMAND", budget.command_bits_per_s, budget.command_frame_bytes
        raise LinkBudgetError(
            f"{rate_hz:g} Hz does not fit {baud} baud: {what} frames of {size} bytes need "
            f"{needed:.0f} bit/s; at {baud} baud the highest rate is "
            f"{int(budget.max_rate_hz)} Hz"
        )
    return budget


# -------------------------------------------------------------------------------- link


class SerialLink:
    """Frames out, parsed (seq, message) pairs in, over one open port.

    `SerialLink(url, baud)` opens the port; `SerialLink.from_serial(ser)` takes a port that
    is already open (any pyserial-like object with read, write and close). Reads never
    block: `poll` takes what has arrived. The link keeps the host's sequence counter
    (`next_seq`), which `send_message` and hot-path encoders share.
    """

    def __init__(
        self,
        url: str,
        baudrate: int = DEFAULT_BAUD,
        *,
        n_sensors: int | None = None,
        n_actuators: int | None = None,
        exclusive: bool = True,
        low_latency: bool = True,
    ) -> None:
        ser = open_serial(url, baudrate, exclusive=exclusive)
        if low_latency and request_low_latency(ser):
            log.debug("low-latency mode set on %s", url)
        self._setup(ser, url, n_sensors, n_actuators)
        log.info("opened %s at %d baud", url, baudrate)

    @classmethod
    def from_serial(
        cls,
        ser: serial.SerialBase,
        *,
        port: str | None = None,
        n_sensors: int | None = None,
        n_actuators: int | None = None,
    ) -> SerialLink:
        """A link over a port that is already open; it is closed with the link."""
        link = cls.__new__(cls)
        link._setup(ser, port or str(getattr(ser, "port", ser)), n_sensors, n_actuators)
        return link

    def _setup(
        self,
        ser: serial.SerialBase,
        port: str,
        n_sensors: int | None,
        n_actuators: int | None,
    ) -> None:
        self.port = port
        self._ser = ser
        self._parser = FrameParser(n_sensors=n_sensors, n_actuators=n_actuators)
        self._backlog: list[tuple[int, Message]] = []
        self._bytes_in = 0
        self._bytes_out = 0
        self._seq = 0
        self._closed = False

    # -- counters

    @property
    def parser_stats(self) -> ParserStats:
        return self._parser.stats

    @property
    def bytes_in(self) -> int:
        return self._bytes_in

    @property
    def bytes_out(self) -> int:
        return self._bytes_out

    @property
    def serial(self) -> serial.SerialBase:
        """The underlying port (for settings such as low-latency mode)."""
        return self._ser

    # -- I/O

    def _check_open(self) -> None:
        if self._closed:
            raise LinkError(f"serial port {self.port} is closed")

    def next_seq(self) -> int:
        """The next header seq of this sender: 0, 1, 2, ... wrapping at 2**32."""
        seq = self._seq
        self._seq = (seq + 1) & 0xFFFFFFFF
        return seq

    def send(self, frame: bytes) -> None:
        """Write one complete frame (delimiter included)."""
        self._check_open()
        try:
            self._ser.write(frame)
        except serial.SerialTimeoutException:
            raise LinkError(
                f"serial port {self.port}: write timed out (is the controller reading?)"
            ) from None
        except (serial.SerialException, OSError) as err:
            raise LinkError(f"serial port {self.port}: write failed: {err}") from None
        self._bytes_out += len(frame)

    def send_message(self, msg: Message) -> int:
        """Encode a message with the next seq and send it; returns that seq."""
        seq = self.next_seq()
        self.send(encode(msg, seq))
        return seq

    def _read_available(self) -> bytes:
        chunks = []
        while True:
            try:
                chunk = self._ser.read(_READ_CHUNK)
            except (serial.SerialException, OSError) as err:
                raise LinkError(
                    f"serial port {self.port}: read failed ({err}); was the device unplugged?"
                ) from None
            if chunk:
                chunks.append(chunk)
            if len(chunk) < _READ_CHUNK:
                return b"".join(chunks)

    def poll(self) -> list[tuple[int, Message]]:
        """Every message received since the last poll, as (seq, message); never blocks."""
        self._check_open()
        out, self._backlog = self._backlog, []
        data = self._read_available()
        if data:
            self._bytes_in += len(data)
            out.extend(self._parser.feed(data))
        return out

    def wait_for(
        self,
        predicate: Callable[[Message], bool],
        timeout_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        interval_s: float = 0.001,
    ) -> Message | None:
        """Poll until a message satisfies predicate; None after timeout_s.

        Messages before the match are discarded (a handshake waits for one answer while
        STATE may stream); messages after it stay for the next `poll`.
        """
        deadline = clock() + timeout_s
        skipped = 0
        while True:
            messages = self.poll()
            for i, (_seq, msg) in enumerate(messages):
                if predicate(msg):
                    self._backlog = messages[i + 1 :]
                    if skipped:
                        log.debug("wait_for skipped %d messages on %s", skipped, self.port)
                    return msg
            skipped += len(messages)
            if clock() >= deadline:
                return None
            sleep(interval_s)

    def close(self) -> None:
        """Close the port; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._ser.close()
        except (serial.SerialException, OSError) as err:
            log.warning("closing %s: %s", self.port, err)

    def __enter__(self) -> SerialLink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
