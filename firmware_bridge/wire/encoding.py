"""Wire protocol v1's encoding: a message's payload and its complete frame
(COBS(body || crc32_le(body)) || 0x00), sizes on the wire, and `CommandEncoder`, the
hot-path COMMAND encoder (one preallocated buffer, no message objects). Every check names
the field. Wire floor.
"""

from __future__ import annotations

import operator
import struct
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from cobs import cobs

from firmware_bridge.wire.constants import (
    ACK_STRUCT,
    COMMAND_STRUCT,
    CRC_SIZE,
    CRC_STRUCT,
    DELIMITER,
    FAULT_STRUCT,
    HEADER_SIZE,
    HEADER_STRUCT,
    HELLO_STRUCT,
    INFO_STRUCT,
    MAX_ACTUATORS,
    MAX_BODY,
    MAX_NAME,
    MAX_SENSORS,
    MAX_TEXT,
    PROTOCOL_VERSION,
    STATE_STRUCT,
    MsgType,
)
from firmware_bridge.wire.errors import ProtocolError
from firmware_bridge.wire.messages import (
    Ack,
    Command,
    Disable,
    Enable,
    Fault,
    Hello,
    Info,
    Message,
    State,
)


def payload_size(
    msg_type: MsgType | int,
    n_sensors: int = 0,
    n_actuators: int = 0,
    name_len: int = MAX_NAME,
    text_len: int = MAX_TEXT,
) -> int:
    """Payload bytes (after the header) of a message of this type."""
    sizes = {
        MsgType.HELLO: HELLO_STRUCT.size,
        MsgType.INFO: INFO_STRUCT.size + name_len,
        MsgType.STATE: STATE_STRUCT.size + 4 * n_sensors,
        MsgType.COMMAND: COMMAND_STRUCT.size + 4 * n_actuators,
        MsgType.ENABLE: 0,
        MsgType.DISABLE: 0,
        MsgType.ACK: ACK_STRUCT.size,
        MsgType.FAULT: FAULT_STRUCT.size + text_len,
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
        _count("sensors", msg.sensors, MAX_SENSORS)
        head = STATE_STRUCT.pack(
            _uint("t_us", msg.t_us, 64),
            _uint("status", msg.status, 16),
            _uint("fault", msg.fault, 16),
            _uint("last_cmd_seq", msg.last_cmd_seq, 32),
            _uint("rx_errors", msg.rx_errors, 16),
        )
        return head + msg.sensors.tobytes()
    if isinstance(msg, Command):
        _count("actuator values", msg.values, MAX_ACTUATORS)
        return COMMAND_STRUCT.pack(_uint("state_seq", msg.state_seq, 32)) + msg.values.tobytes()
    if isinstance(msg, Hello):
        return HELLO_STRUCT.pack(_uint("state_rate_hz", msg.state_rate_hz, 16))
    if isinstance(msg, Info):
        name = _ascii("INFO name", msg.name, MAX_NAME)
        version = tuple(msg.firmware_version)
        if len(version) != 3:
            raise ProtocolError(f"firmware_version must be (major, minor, patch), got {version}")
        return (
            INFO_STRUCT.pack(
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
        return ACK_STRUCT.pack(
            _uint("acked_seq", msg.acked_seq, 32),
            _uint("acked_type", msg.acked_type, 8),
            _uint("result", msg.result, 8),
        )
    if isinstance(msg, Fault):
        text = _ascii("FAULT text", msg.text, MAX_TEXT)
        return (
            FAULT_STRUCT.pack(_uint("code", msg.code, 16), _uint("t_us", msg.t_us, 64), len(text))
            + text
        )
    raise ProtocolError(f"not a protocol message: {msg!r}")


def frame_body(body: bytes) -> bytes:
    """Frame any body as-is: COBS(body || crc32_le(body)) || 0x00. No checks on the body."""
    return cobs.encode(body + CRC_STRUCT.pack(zlib.crc32(body))) + DELIMITER


def encode(msg: Message, seq: int) -> bytes:
    """The complete frame of a message with header sequence number seq, delimiter included."""
    payload = encode_payload(msg)
    body = HEADER_STRUCT.pack(PROTOCOL_VERSION, msg.TYPE, _uint("seq", seq, 32)) + payload
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
        if self.n_actuators > MAX_ACTUATORS:
            raise ProtocolError(
                f"{n_actuators} actuator values do not fit a 250-byte body "
                f"(at most {MAX_ACTUATORS})"
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
        CRC_STRUCT.pack_into(self._buf, self._crc_at, zlib.crc32(self._body))
        return cobs.encode(self._buf) + DELIMITER
