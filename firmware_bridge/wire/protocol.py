"""Wire protocol v1 between the host and the robot's microcontroller.

Owns the message types, the frame format (COBS(body || crc32_le(body)) || 0x00), encoding,
decoding and the stream parser that turns received bytes into messages. It knows nothing
about ports or timing (that is `link.py`). The specification is docs/protocol.md; the test
vectors shared with the C firmware are firmware/test_vectors.txt.
"""

from __future__ import annotations

import operator
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from enum import Enum, IntEnum, IntFlag
from typing import Any, ClassVar

import numpy as np
from cobs import cobs

PROTOCOL_VERSION = 1
HEADER_SIZE = 6
CRC_SIZE = 4
MAX_BODY = 250
"""Largest body (header + payload) a sender may frame."""
MAX_FRAME = 257
"""Largest frame, delimiter included, that a receiver accepts (docs/protocol.md, Framing)."""
MAX_NAME = 32
MAX_TEXT = 48
RESET_AFTER_OLD_STATES = 3
"""This many STATEs in a row older than the newest one seen are a new stream: the controller
reset. Fewer are frames the link duplicated, delayed or reordered; they are ignored."""
DELIMITER = b"\x00"

# The CRC-32 of any data followed by its own little-endian CRC-32 is this constant, so a
# frame is checked with one crc32 call over body and CRC, without slicing the CRC off.
_CRC_RESIDUE = 0x2144DF1C
_F32 = np.dtype("<f4")

_HEADER = struct.Struct("<BBI")
_CRC = struct.Struct("<I")
_HELLO = struct.Struct("<H")
_INFO = struct.Struct("<B3BIBBHHHB")  # everything up to and including name_len
_STATE = struct.Struct("<QHHIH")  # everything before the sensors
_COMMAND = struct.Struct("<I")  # everything before the values
_ACK = struct.Struct("<IBB")
_FAULT = struct.Struct("<HQB")  # everything before the text

_MAX_SENSORS = (MAX_BODY - HEADER_SIZE - _STATE.size) // 4
_MAX_ACTUATORS = (MAX_BODY - HEADER_SIZE - _COMMAND.size) // 4


class MsgType(IntEnum):
    """Header `type` byte."""

    HELLO = 0x01
    INFO = 0x02
    STATE = 0x10
    COMMAND = 0x20
    ENABLE = 0x30
    DISABLE = 0x31
    ACK = 0x32
    FAULT = 0x40


class Status(IntFlag):
    """STATE.status bits."""

    ENABLED = 1
    WATCHDOG = 2
    FAULTED = 4
    STREAMING = 8


class FaultCode(IntEnum):
    """FAULT.code, STATE.fault and a non-zero ACK.result."""

    NONE = 0
    WATCHDOG = 1
    BAD_COMMAND = 2
    SENSOR = 3
    LIMIT = 4
    ESTOP = 5


class DropKind(Enum):
    """Why a received frame was dropped; each kind has a counter in `ParserStats`."""

    COBS = "cobs"
    SHORT = "short"
    CRC = "crc"
    VERSION = "version"
    TYPE = "type"
    LENGTH = "length"
    OVERLONG = "overlong"


class ProtocolError(ValueError):
    """A message that cannot be encoded, or a frame that cannot be decoded."""


class FrameError(ProtocolError):
    """A received frame that must be dropped; `kind` says why."""

    kind: ClassVar[DropKind]


class CobsError(FrameError):
    kind = DropKind.COBS


class ShortFrameError(FrameError):
    kind = DropKind.SHORT


class CrcError(FrameError):
    kind = DropKind.CRC


class VersionError(FrameError):
    kind = DropKind.VERSION


class UnknownTypeError(FrameError):
    kind = DropKind.TYPE


class LengthError(FrameError):
    kind = DropKind.LENGTH


class OverlongError(FrameError):
    kind = DropKind.OVERLONG


# ---------------------------------------------------------------------------- messages


def _frozen_f32(values: Any, what: str) -> np.ndarray:
    """A read-only 1-D little-endian float32 array; decoded arrays are taken as they are."""
    if (
        isinstance(values, np.ndarray)
        and values.dtype == _F32
        and values.ndim == 1
        and not values.flags.writeable
    ):
        return values
    try:
        array = np.array(values, dtype=_F32)
    except (TypeError, ValueError) as err:
        raise ProtocolError(f"{what} must be a sequence of numbers: {err}") from err
    if array.ndim != 1:
        raise ProtocolError(f"{what} must be one-dimensional, got shape {array.shape}")
    array.flags.writeable = False
    return array


class _ArrayMessage:
    """Equality and hashing for messages holding an array: fields compared as wire bytes,
    so -0.0 differs from 0.0 and a NaN equals the same NaN."""

    def _key(self) -> tuple[Any, ...]:
        return tuple(
            getattr(self, f.name).tobytes()
            if isinstance(getattr(self, f.name), np.ndarray)
            else getattr(self, f.name)
            for f in fields(self)  # type: ignore[arg-type]
        )

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._key())


@dataclass(frozen=True)
class Hello:
    """Host -> controller: stream STATE at this rate from now on (0 stops); disarms."""

    state_rate_hz: int

    TYPE: ClassVar[MsgType] = MsgType.HELLO


@dataclass(frozen=True)
class Info:
    """Controller -> host, the answer to HELLO: what the controller is and can do."""

    protocol_version: int
    firmware_version: tuple[int, int, int]
    boot_id: int
    n_sensors: int
    n_actuators: int
    min_rate_hz: int
    max_rate_hz: int
    watchdog_ms: int
    name: str

    TYPE: ClassVar[MsgType] = MsgType.INFO


@dataclass(frozen=True, eq=False)
class State(_ArrayMessage):
    """Controller -> host: one sensor sample and the controller's status."""

    t_us: int
    status: Status | int
    fault: FaultCode | int
    last_cmd_seq: int
    rx_errors: int
    sensors: np.ndarray

    TYPE: ClassVar[MsgType] = MsgType.STATE

    def __post_init__(self) -> None:
        object.__setattr__(self, "sensors", _frozen_f32(self.sensors, "STATE sensors"))


@dataclass(frozen=True, eq=False)
class Command(_ArrayMessage):
    """Host -> controller: actuator values answering the STATE whose header seq is state_seq."""

    state_seq: int
    values: np.ndarray

    TYPE: ClassVar[MsgType] = MsgType.COMMAND

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", _frozen_f32(self.values, "COMMAND values"))


@dataclass(frozen=True)
class Enable:
    """Host -> controller: arm the actuators (answered by ACK)."""

    TYPE: ClassVar[MsgType] = MsgType.ENABLE


@dataclass(frozen=True)
class Disable:
    """Host -> controller: safe state, clear a latched fault (answered by ACK)."""

    TYPE: ClassVar[MsgType] = MsgType.DISABLE


@dataclass(frozen=True)
class Ack:
    """Controller -> host: the outcome of ENABLE or DISABLE (result 0 ok, else a fault code)."""

    acked_seq: int
    acked_type: MsgType | int
    result: FaultCode | int

    TYPE: ClassVar[MsgType] = MsgType.ACK


@dataclass(frozen=True)
class Fault:
    """Controller -> host, sent once when a fault is raised."""

    code: FaultCode | int
    t_us: int
    text: str

    TYPE: ClassVar[MsgType] = MsgType.FAULT


Message = Hello | Info | State | Command | Enable | Disable | Ack | Fault

# -------------------------------------------------------------------------------- sizes


def payload_size(
    msg_type: MsgType | int,
    n_sensors: int = 0,
    n_actuators: int = 0,
    name_len: int = MAX_NAME,
    text_len: int = MAX_TEXT,
) -> int:
    """Payload bytes (after the header) of a message of this type."""
    sizes = {
        MsgType.HELLO: _HELLO.size,
        MsgType.INFO: _INFO.size + name_len,
        MsgType.STATE: _STATE.size + 4 * n_sensors,
        MsgType.COMMAND: _COMMAND.size + 4 * n_actuators,
        MsgType.ENABLE: 0,
        MsgType.DISABLE: 0,
        MsgType.ACK: _ACK.size,
        MsgType.FAULT: _FAULT.size + text_len,
    }
    try:
        return sizes[MsgType(msg_type)]
    except ValueError as err:
        raise ProtocolError(f"unknown message type {msg_type!r}") from err


def cobs_size(n: int) -> int:
    """Worst-case COBS-encoded size of n bytes (no delimiter): one code byte per 254."""
    return n + 1 + max(n - 1, 0) // 254


def frame_size(
    msg_type: MsgType | int,
    n_sensors: int = 0,
    n_actuators: int = 0,
    name_len: int = MAX_NAME,
    text_len: int = MAX_TEXT,
) -> int:
    """Worst-case bytes on the wire for one message: COBS overhead and delimiter included.

    With bodies of at most 250 bytes COBS adds exactly one byte, so this is exact for
    every frame whose variable parts have the given lengths.
    """
    body = HEADER_SIZE + payload_size(msg_type, n_sensors, n_actuators, name_len, text_len)
    return cobs_size(body + CRC_SIZE) + len(DELIMITER)


# ----------------------------------------------------------------------------- encoding


def _uint(what: str, value: Any, bits: int) -> int:
    try:
        number = operator.index(value)
    except TypeError as err:
        raise ProtocolError(f"{what} must be an integer, got {value!r}") from err
    if not 0 <= number < 1 << bits:
        raise ProtocolError(f"{what} must fit u{bits} (0..{(1 << bits) - 1}), got {number}")
    return number


def _ascii(what: str, text: str, limit: int) -> bytes:
    try:
        raw = text.encode("ascii")
    except (UnicodeEncodeError, AttributeError) as err:
        raise ProtocolError(f"{what} must be an ASCII string, got {text!r}") from err
    if len(raw) > limit:
        raise ProtocolError(f"{what} is {len(raw)} characters, at most {limit} allowed")
    return raw


def _count(what: str, array: np.ndarray, limit: int) -> int:
    if len(array) > limit:
        raise ProtocolError(f"{len(array)} {what} do not fit a 250-byte body (at most {limit})")
    return len(array)


def encode_payload(msg: Message) -> bytes:
    """The payload bytes (after the header) of a message, validated."""
    if isinstance(msg, State):
        _count("sensors", msg.sensors, _MAX_SENSORS)
        head = _STATE.pack(
            _uint("t_us", msg.t_us, 64),
            _uint("status", msg.status, 16),
            _uint("fault", msg.fault, 16),
            _uint("last_cmd_seq", msg.last_cmd_seq, 32),
            _uint("rx_errors", msg.rx_errors, 16),
        )
        return head + msg.sensors.tobytes()
    if isinstance(msg, Command):
        _count("actuator values", msg.values, _MAX_ACTUATORS)
        return _COMMAND.pack(_uint("state_seq", msg.state_seq, 32)) + msg.values.tobytes()
    if isinstance(msg, Hello):
        return _HELLO.pack(_uint("state_rate_hz", msg.state_rate_hz, 16))
    if isinstance(msg, Info):
        name = _ascii("INFO name", msg.name, MAX_NAME)
        version = tuple(msg.firmware_version)
        if len(version) != 3:
            raise ProtocolError(f"firmware_version must be (major, minor, patch), got {version}")
        return (
            _INFO.pack(
                _uint("protocol_version", msg.protocol_version, 8),
                *(_uint("firmware_version", part, 8) for part in version),
                _uint("boot_id", msg.boot_id, 32),
                _uint("n_sensors", msg.n_sensors, 8),
                _uint("n_actuators", msg.n_actuators, 8),
                _uint("min_rate_hz", msg.min_rate_hz, 16),
                _uint("max_rate_hz", msg.max_rate_hz, 16),
                _uint("watchdog_ms", msg.watchdog_ms, 16),
                len(name),
            )
            + name
        )
    if isinstance(msg, (Enable, Disable)):
        return b""
    if isinstance(msg, Ack):
        return _ACK.pack(
            _uint("acked_seq", msg.acked_seq, 32),
            _uint("acked_type", msg.acked_type, 8),
            _uint("result", msg.result, 8),
        )
    if isinstance(msg, Fault):
        text = _ascii("FAULT text", msg.text, MAX_TEXT)
        return (
            _FAULT.pack(_uint("code", msg.code, 16), _uint("t_us", msg.t_us, 64), len(text)) + text
        )
    raise ProtocolError(f"not a protocol message: {msg!r}")


def frame_body(body: bytes) -> bytes:
    """Frame any body as-is: COBS(body || crc32_le(body)) || 0x00. No checks on the body."""
    return cobs.encode(body + _CRC.pack(zlib.crc32(body))) + DELIMITER


def encode(msg: Message, seq: int) -> bytes:
    """The complete frame of a message with header sequence number seq, delimiter included."""
    payload = encode_payload(msg)
    body = _HEADER.pack(PROTOCOL_VERSION, msg.TYPE, _uint("seq", seq, 32)) + payload
    if len(body) > MAX_BODY:
        raise ProtocolError(f"{msg.TYPE.name} body is {len(body)} bytes, at most {MAX_BODY}")
    return frame_body(body)


class CommandEncoder:
    """Hot-path COMMAND encoder: packs into one preallocated buffer, no message objects.

    Gives the same bytes as `encode(Command(state_seq, values), seq)`; a value outside the
    float32 range is refused here (ProtocolError) where `Command` would round it to inf.
    """

    def __init__(self, n_actuators: int) -> None:
        self.n_actuators = _uint("n_actuators", n_actuators, 8)
        if self.n_actuators > _MAX_ACTUATORS:
            raise ProtocolError(
                f"{n_actuators} actuator values do not fit a 250-byte body "
                f"(at most {_MAX_ACTUATORS})"
            )
        self._struct = struct.Struct(f"<BBII{self.n_actuators}f")
        self._crc_at = self._struct.size
        self._buf = bytearray(self._crc_at + CRC_SIZE)
        self._body = memoryview(self._buf)[: self._crc_at]

    def encode(self, seq: int, state_seq: int, values: Sequence[float] | np.ndarray) -> bytes:
        """The complete COMMAND frame, delimiter included."""
        if len(values) != self.n_actuators:
            raise ProtocolError(
                f"COMMAND needs {self.n_actuators} actuator values, got {len(values)}"
            )
        try:
            self._struct.pack_into(
                self._buf, 0, PROTOCOL_VERSION, MsgType.COMMAND, seq, state_seq, *values
            )
        except (struct.error, OverflowError, TypeError) as err:
            raise ProtocolError(
                f"cannot encode COMMAND seq={seq!r} state_seq={state_seq!r}: {err}"
            ) from err
        _CRC.pack_into(self._buf, self._crc_at, zlib.crc32(self._body))
        return cobs.encode(self._buf) + DELIMITER


# ----------------------------------------------------------------------------- decoding

_Decoder = Callable[[bytes, int, "int | None", "int | None"], Message]
_FAULT_CODES = {int(code): code for code in FaultCode}
_MSG_TYPES = {int(kind): kind for kind in MsgType}
_STATUS_CACHE = {bits: Status(bits) for bits in range(16)}


def _status(bits: int) -> Status:
    status = _STATUS_CACHE.get(bits)
    return Status(bits) if status is None else status


def _text(raw: bytes) -> str:
    # Lenient on receive: a non-ASCII byte becomes U+FFFD instead of dropping a valid frame.
    return raw.decode("ascii", errors="replace")


def _decode_hello(raw: bytes, n: int, _s: int | None, _a: int | None) -> Message:
    if n != _HELLO.size:
        raise LengthError(f"HELLO payload is {n} bytes, expected {_HELLO.size}")
    return Hello(*_HELLO.unpack_from(raw, HEADER_SIZE))


def _decode_info(raw: bytes, n: int, _s: int | None, _a: int | None) -> Message:
    if n < _INFO.size:
        raise LengthError(f"INFO payload is {n} bytes, expected at least {_INFO.size}")
    pv, major, minor, patch, boot, ns, na, lo, hi, wd, name_len = _INFO.unpack_from(
        raw, HEADER_SIZE
    )
    if name_len > MAX_NAME or n != _INFO.size + name_len:
        raise LengthError(f"INFO payload is {n} bytes with name_len {name_len}")
    start = HEADER_SIZE + _INFO.size
    name = _text(raw[start : start + name_len])
    return Info(pv, (major, minor, patch), boot, ns, na, lo, hi, wd, name)


def _decode_state(raw: bytes, n: int, n_sensors: int | None, _a: int | None) -> Message:
    count, rest = divmod(n - _STATE.size, 4)
    if rest or count < 0 or (n_sensors is not None and count != n_sensors):
        expected = "18 + 4 * n" if n_sensors is None else str(_STATE.size + 4 * n_sensors)
        raise LengthError(f"STATE payload is {n} bytes, expected {expected}")
    t_us, status, fault, last_cmd_seq, rx_errors = _STATE.unpack_from(raw, HEADER_SIZE)
    sensors = np.frombuffer(raw, _F32, count, HEADER_SIZE + _STATE.size)
    return State(
        t_us, _status(status), _FAULT_CODES.get(fault, fault), last_cmd_seq, rx_errors, sensors
    )


def _decode_command(raw: bytes, n: int, _s: int | None, n_actuators: int | None) -> Message:
    count, rest = divmod(n - _COMMAND.size, 4)
    if rest or count < 0 or (n_actuators is not None and count != n_actuators):
        expected = "4 + 4 * n" if n_actuators is None else str(_COMMAND.size + 4 * n_actuators)
        raise LengthError(f"COMMAND payload is {n} bytes, expected {expected}")
    (state_seq,) = _COMMAND.unpack_from(raw, HEADER_SIZE)
    return Command(state_seq, np.frombuffer(raw, _F32, count, HEADER_SIZE + _COMMAND.size))


def _decode_empty(message: Message) -> _Decoder:
    def decode(raw: bytes, n: int, _s: int | None, _a: int | None) -> Message:
        if n:
            raise LengthError(f"{message.TYPE.name} payload is {n} bytes, expected 0")
        return message

    return decode


def _decode_ack(raw: bytes, n: int, _s: int | None, _a: int | None) -> Message:
    if n != _ACK.size:
        raise LengthError(f"ACK payload is {n} bytes, expected {_ACK.size}")
    acked_seq, acked_type, result = _ACK.unpack_from(raw, HEADER_SIZE)
    return Ack(acked_seq, _MSG_TYPES.get(acked_type, acked_type), _FAULT_CODES.get(result, result))


def _decode_fault(raw: bytes, n: int, _s: int | None, _a: int | None) -> Message:
    if n < _FAULT.size:
        raise LengthError(f"FAULT payload is {n} bytes, expected at least {_FAULT.size}")
    code, t_us, text_len = _FAULT.unpack_from(raw, HEADER_SIZE)
    if text_len > MAX_TEXT or n != _FAULT.size + text_len:
        raise LengthError(f"FAULT payload is {n} bytes with text length {text_len}")
    start = HEADER_SIZE + _FAULT.size
    return Fault(_FAULT_CODES.get(code, code), t_us, _text(raw[start : start + text_len]))


_DECODERS = {
    MsgType.HELLO: _decode_hello,
    MsgType.INFO: _decode_info,
    MsgType.STATE: _decode_state,
    MsgType.COMMAND: _decode_command,
    MsgType.ENABLE: _decode_empty(Enable()),
    MsgType.DISABLE: _decode_empty(Disable()),
    MsgType.ACK: _decode_ack,
    MsgType.FAULT: _decode_fault,
}
_DECODERS_BY_INT = {int(kind): decoder for kind, decoder in _DECODERS.items()}
_MIN_RAW = HEADER_SIZE + CRC_SIZE
_MAX_ENCODED = MAX_FRAME - len(DELIMITER)


def decode_frame(
    encoded: bytes,
    n_sensors: int | None = None,
    n_actuators: int | None = None,
) -> tuple[int, Message]:
    """Decode one frame given without its delimiter into (header seq, message).

    Raises a `FrameError` subclass naming the first check that failed, in the order of
    docs/protocol.md: COBS, short, CRC, version, type, length. With n_sensors / n_actuators
    given, a STATE / COMMAND with another count is a length error.
    """
    if len(encoded) > _MAX_ENCODED:
        raise OverlongError(f"frame is {len(encoded)} bytes, at most {_MAX_ENCODED}")
    try:
        raw = cobs.decode(bytes(encoded))
    except cobs.DecodeError as err:
        raise CobsError(f"COBS decoding failed: {err}") from None
    if len(raw) < _MIN_RAW:
        raise ShortFrameError(f"frame decodes to {len(raw)} bytes, at least {_MIN_RAW} needed")
    if zlib.crc32(raw) != _CRC_RESIDUE:
        raise CrcError("CRC mismatch")
    if raw[0] != PROTOCOL_VERSION:
        raise VersionError(f"protocol version {raw[0]}, expected {PROTOCOL_VERSION}")
    decoder = _DECODERS_BY_INT.get(raw[1])
    if decoder is None:
        raise UnknownTypeError(f"unknown message type 0x{raw[1]:02x}")
    if len(raw) - CRC_SIZE > MAX_BODY:
        raise LengthError(f"body is {len(raw) - CRC_SIZE} bytes, at most {MAX_BODY}")
    (seq,) = _CRC.unpack_from(raw, 2)
    return seq, decoder(raw, len(raw) - _MIN_RAW, n_sensors, n_actuators)


# ------------------------------------------------------------------------------ parsing


@dataclass
class ParserStats:
    """Counters of a FrameParser: accepted frames, drops by kind, bytes thrown away."""

    frames_ok: int = 0
    dropped_cobs: int = 0
    dropped_short: int = 0
    dropped_crc: int = 0
    dropped_version: int = 0
    dropped_type: int = 0
    dropped_length: int = 0
    dropped_overlong: int = 0
    bytes_discarded: int = 0
    """Received bytes that belonged to dropped frames (delimiters not counted)."""

    @property
    def dropped_total(self) -> int:
        return (
            self.dropped_cobs
            + self.dropped_short
            + self.dropped_crc
            + self.dropped_version
            + self.dropped_type
            + self.dropped_length
            + self.dropped_overlong
        )

    def dropped(self, kind: DropKind) -> int:
        return int(getattr(self, f"dropped_{kind.value}"))

    def as_dict(self) -> dict[str, int]:
        counts = {f.name: int(getattr(self, f.name)) for f in fields(self)}
        counts["dropped_total"] = self.dropped_total
        return counts


class FrameParser:
    """Turns a received byte stream into (seq, message) pairs.

    Splits on 0x00 with bytes.split (no per-byte Python), keeps an unfinished frame across
    feeds, drops and counts every bad frame and resynchronizes at the next delimiter. Bytes
    beyond max_frame without a delimiter are discarded as they come, so memory stays bounded.
    Empty frames (repeated delimiters) are ignored and not counted: a sender may send a
    lone 0x00 to flush a receiver.
    """

    def __init__(
        self,
        n_sensors: int | None = None,
        n_actuators: int | None = None,
        max_frame: int = MAX_FRAME,
    ) -> None:
        if max_frame < 2:
            raise ValueError(f"max_frame must be at least 2, got {max_frame}")
        self.n_sensors = n_sensors
        self.n_actuators = n_actuators
        self.max_frame = max_frame
        self.stats = ParserStats()
        self._limit = max_frame - len(DELIMITER)  # encoded bytes before the delimiter
        self._partial = b""
        self._discarding = False  # inside an overlong frame, waiting for its delimiter

    def reset(self) -> None:
        """Forget an unfinished frame (the counters stay)."""
        self._partial = b""
        self._discarding = False

    def feed(self, data: bytes) -> list[tuple[int, Message]]:
        """Parse a chunk of received bytes; returns the messages completed by it, in order."""
        stats = self.stats
        if type(data) is not bytes:
            data = bytes(memoryview(data))  # any buffer; an int would make bytes(n) zeros
        pieces = data.split(DELIMITER)
        tail = pieces.pop()
        out: list[tuple[int, Message]] = []
        if pieces:
            head = self._partial + pieces[0]
            self._partial = b""
            if self._discarding:
                self._discarding = False
                stats.dropped_overlong += 1
                stats.bytes_discarded += len(head)
                head = b""
            pieces[0] = head
            limit = self._limit
            for piece in pieces:
                if not piece:
                    continue
                if len(piece) > limit:
                    stats.dropped_overlong += 1
                    stats.bytes_discarded += len(piece)
                    continue
                try:
                    out.append(decode_frame(piece, self.n_sensors, self.n_actuators))
                except FrameError as err:
                    kind = f"dropped_{err.kind.value}"
                    setattr(stats, kind, getattr(stats, kind) + 1)
                    stats.bytes_discarded += len(piece)
            stats.frames_ok += len(out)
        elif self._partial:
            tail = self._partial + tail
        if self._discarding:
            stats.bytes_discarded += len(tail)
        elif len(tail) > self._limit:
            self._discarding = True
            self._partial = b""
            stats.bytes_discarded += len(tail)
        else:
            self._partial = tail
        return out
