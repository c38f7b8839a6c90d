"""Wire protocol v1's errors: `ProtocolError` (a message that cannot be encoded, a frame
that cannot be decoded) and the `FrameError` kinds, one per reason a received frame is
dropped (`DropKind`, counted by `frame_parser.ParserStats`). Wire floor.
"""

from __future__ import annotations

from enum import Enum
from typing import ClassVar


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
