"""Wire protocol v1's decoding: one frame (without its delimiter) into (header seq,
message), checked in the order of docs/protocol.md (COBS, short, CRC, version, type,
length); each failed check is a `FrameError` of its kind. Wire floor.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np
from cobs import cobs

from firmware_bridge.wire.constants import (
    ACK_STRUCT,
    COMMAND_STRUCT,
    CRC_RESIDUE,
    CRC_SIZE,
    CRC_STRUCT,
    DELIMITER,
    F32,
    FAULT_STRUCT,
    HEADER_SIZE,
    HELLO_STRUCT,
    INFO_STRUCT,
    MAX_BODY,
    MAX_FRAME,
    MAX_NAME,
    MAX_TEXT,
    PROTOCOL_VERSION,
    STATE_STRUCT,
    FaultCode,
    MsgType,
    Status,
)
from firmware_bridge.wire.errors import (
    CobsError,
    CrcError,
    LengthError,
    OverlongError,
    ShortFrameError,
    UnknownTypeError,
    VersionError,
)
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
    if n != HELLO_STRUCT.size:
        raise LengthError(f"HELLO payload is {n} bytes, expected {HELLO_STRUCT.size}")
    return Hello(*HELLO_STRUCT.unpack_from(raw, HEADER_SIZE))


def _decode_info(raw: bytes, n: int, _s: int | None, _a: int | None) -> Message:
    if n < INFO_STRUCT.size:
        raise LengthError(f"INFO payload is {n} bytes, expected at least {INFO_STRUCT.size}")
    pv, major, minor, patch, boot, ns, na, lo, hi, wd, name_len = INFO_STRUCT.unpack_from(
        raw, HEADER_SIZE
    )
    if name_len > MAX_NAME or n != INFO_STRUCT.size + name_len:
        raise LengthError(f"INFO payload is {n} bytes with name_len {name_len}")
    start = HEADER_SIZE + INFO_STRUCT.size
    name = _text(raw[start : start + name_len])
    return Info(pv, (major, minor, patch), boot, ns, na, lo, hi, wd, name)


def _decode_state(raw: bytes, n: int, n_sensors: int | None, _a: int | None) -> Message:
    count, rest = divmod(n - STATE_STRUCT.size, 4)
    if rest or count < 0 or (n_sensors is not None and count != n_sensors):
        expected = "18 + 4 * n" if n_sensors is None else str(STATE_STRUCT.size + 4 * n_sensors)
        raise LengthError(f"STATE payload is {n} bytes, expected {expected}")
    t_us, status, fault, last_cmd_seq, rx_errors = STATE_STRUCT.unpack_from(raw, HEADER_SIZE)
    sensors = np.frombuffer(raw, F32, count, HEADER_SIZE + STATE_STRUCT.size)
    return State(
        t_us, _status(status), _FAULT_CODES.get(fault, fault), last_cmd_seq, rx_errors, sensors
    )


def _decode_command(raw: bytes, n: int, _s: int | None, n_actuators: int | None) -> Message:
    count, rest = divmod(n - COMMAND_STRUCT.size, 4)
    if rest or count < 0 or (n_actuators is not None and count != n_actuators):
        expected = (
            "4 + 4 * n" if n_actuators is None else str(COMMAND_STRUCT.size + 4 * n_actuators)
        )
        raise LengthError(f"COMMAND payload is {n} bytes, expected {expected}")
    (state_seq,) = COMMAND_STRUCT.unpack_from(raw, HEADER_SIZE)
    return Command(state_seq, np.frombuffer(raw, F32, count, HEADER_SIZE + COMMAND_STRUCT.size))


def _decode_empty(message: Message) -> _Decoder:
    def decode(raw: bytes, n: int, _s: int | None, _a: int | None) -> Message:
        if n:
            raise LengthError(f"{message.TYPE.name} payload is {n} bytes, expected 0")
        return message

    return decode


def _decode_ack(raw: bytes, n: int, _s: int | None, _a: int | None) -> Message:
    if n != ACK_STRUCT.size:
        raise LengthError(f"ACK payload is {n} bytes, expected {ACK_STRUCT.size}")
    acked_seq, acked_type, result = ACK_STRUCT.unpack_from(raw, HEADER_SIZE)
    return Ack(acked_seq, _MSG_TYPES.get(acked_type, acked_type), _FAULT_CODES.get(result, result))


def _decode_fault(raw: bytes, n: int, _s: int | None, _a: int | None) -> Message:
    if n < FAULT_STRUCT.size:
        raise LengthError(f"FAULT payload is {n} bytes, expected at least {FAULT_STRUCT.size}")
    code, t_us, text_len = FAULT_STRUCT.unpack_from(raw, HEADER_SIZE)
    if text_len > MAX_TEXT or n != FAULT_STRUCT.size + text_len:
        raise LengthError(f"FAULT payload is {n} bytes with text length {text_len}")
    start = HEADER_SIZE + FAULT_STRUCT.size
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
    if zlib.crc32(raw) != CRC_RESIDUE:
        raise CrcError("CRC mismatch")
    if raw[0] != PROTOCOL_VERSION:
        raise VersionError(f"protocol version {raw[0]}, expected {PROTOCOL_VERSION}")
    decoder = _DECODERS_BY_INT.get(raw[1])
    if decoder is None:
        raise UnknownTypeError(f"unknown message type 0x{raw[1]:02x}")
    if len(raw) - CRC_SIZE > MAX_BODY:
        raise LengthError(f"body is {len(raw) - CRC_SIZE} bytes, at most {MAX_BODY}")
    (seq,) = CRC_STRUCT.unpack_from(raw, 2)
    return seq, decoder(raw, len(raw) - _MIN_RAW, n_sensors, n_actuators)
