"""Wire protocol v1's stream parser: `FrameParser` turns received bytes into (seq, message)
pairs, dropping and counting every bad frame (`ParserStats`) and resynchronizing at the
next delimiter; memory stays bounded. Wire floor.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from firmware_bridge.wire.constants import DELIMITER, MAX_FRAME
from firmware_bridge.wire.decoding import decode_frame
from firmware_bridge.wire.errors import DropKind, FrameError
from firmware_bridge.wire.messages import Message


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
