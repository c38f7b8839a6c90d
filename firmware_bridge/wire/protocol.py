"""Wire protocol v1 between the host and the robot's microcontroller.

The protocol's one import point: message types, the frame format (COBS(body ||
crc32_le(body)) || 0x00), encoding, decoding and the stream parser that turns received bytes
into messages. It knows nothing about ports or timing (that is `link.py`). The specification
is docs/protocol.md; the test vectors shared with the C firmware are firmware/test_vectors.txt.

The code is in one module per role, gathered here:

    constants.py     version, sizes and limits, byte layouts, MsgType / Status / FaultCode
    errors.py        ProtocolError, the FrameError kinds, DropKind
    messages.py      Hello, Info, State, Command, Enable, Disable, Ack, Fault; Message
    encoding.py      encode_payload, frame_body, encode, sizes on the wire, CommandEncoder
    decoding.py      decode_frame
    frame_parser.py  FrameParser, ParserStats

Wire floor.
"""

from __future__ import annotations

from firmware_bridge.wire.constants import (
    CRC_SIZE,
    DELIMITER,
    HEADER_SIZE,
    MAX_BODY,
    MAX_FRAME,
    MAX_NAME,
    MAX_TEXT,
    PROTOCOL_VERSION,
    RESET_AFTER_OLD_STATES,
    FaultCode,
    MsgType,
    Status,
)
from firmware_bridge.wire.decoding import decode_frame
from firmware_bridge.wire.encoding import (
    CommandEncoder,
    cobs_size,
    encode,
    encode_payload,
    frame_body,
    frame_size,
    payload_size,
)
from firmware_bridge.wire.errors import (
    CobsError,
    CrcError,
    DropKind,
    FrameError,
    LengthError,
    OverlongError,
    ProtocolError,
    ShortFrameError,
    UnknownTypeError,
    VersionError,
)
from firmware_bridge.wire.frame_parser import FrameParser, ParserStats
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

__all__ = [
    "CRC_SIZE",
    "DELIMITER",
    "HEADER_SIZE",
    "MAX_BODY",
    "MAX_FRAME",
    "MAX_NAME",
    "MAX_TEXT",
    "PROTOCOL_VERSION",
    "RESET_AFTER_OLD_STATES",
    "Ack",
    "CobsError",
    "Command",
    "CommandEncoder",
    "CrcError",
    "Disable",
    "DropKind",
    "Enable",
    "Fault",
    "FaultCode",
    "FrameError",
    "FrameParser",
    "Hello",
    "Info",
    "LengthError",
    "Message",
    "MsgType",
    "OverlongError",
    "ParserStats",
    "ProtocolError",
    "ShortFrameError",
    "State",
    "Status",
    "UnknownTypeError",
    "VersionError",
    "cobs_size",
    "decode_frame",
    "encode",
    "encode_payload",
    "frame_body",
    "frame_size",
    "payload_size",
]
