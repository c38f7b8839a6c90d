"""Wire protocol v1's numbers (docs/protocol.md): version, sizes and limits, the delimiter,
the byte layout of the header and of each message's fixed part, and the enums on the wire
(header type byte, STATE status bits, fault codes). Encoding, decoding and the C firmware's
generators (firmware/make_vectors.py) read them from here, through `protocol`. Wire floor.
"""

from __future__ import annotations

import struct
from enum import IntEnum, IntFlag

import numpy as np

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
CRC_RESIDUE = 0x2144DF1C
F32 = np.dtype("<f4")

HEADER_STRUCT = struct.Struct("<BBI")
CRC_STRUCT = struct.Struct("<I")
HELLO_STRUCT = struct.Struct("<H")
INFO_STRUCT = struct.Struct("<B3BIBBHHHB")  # everything up to and including name_len
STATE_STRUCT = struct.Struct("<QHHIH")  # everything before the sensors
COMMAND_STRUCT = struct.Struct("<I")  # everything before the values
ACK_STRUCT = struct.Struct("<IBB")
FAULT_STRUCT = struct.Struct("<HQB")  # everything before the text

MAX_SENSORS = (MAX_BODY - HEADER_SIZE - STATE_STRUCT.size) // 4
"""Most sensor values a STATE body holds."""
MAX_ACTUATORS = (MAX_BODY - HEADER_SIZE - COMMAND_STRUCT.size) // 4
"""Most actuator values a COMMAND body holds."""


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
