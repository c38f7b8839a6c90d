"""Wire protocol v1, the stream parser: reassembly across feeds, resynchronization after
garbage, bounded memory on overlong input, the count checks, unknown codes kept as ints,
and its drop statistics."""

from __future__ import annotations

import numpy as np
import pytest

from firmware_bridge.wire import protocol as p
from firmware_bridge.wire.protocol import (
    Ack,
    Command,
    Enable,
    Fault,
    FaultCode,
    FrameParser,
    Hello,
    State,
    Status,
    decode_frame,
    encode,
)

HELLO = encode(Hello(500), 0)
ENABLE = encode(Enable(), 1)


def test_parser_reassembles_across_feeds() -> None:
    stream = HELLO + ENABLE + HELLO
    parser = FrameParser()
    got = []
    for byte in stream:
        got += parser.feed(bytes([byte]))
    assert got == [(0, Hello(500)), (1, Enable()), (0, Hello(500))]
    assert parser.stats.frames_ok == 3 and parser.stats.dropped_total == 0


def test_parser_resynchronizes_after_garbage() -> None:
    parser = FrameParser()
    # Garbage ended by a delimiter costs nothing but itself.
    assert parser.feed(b"\x13\x37\x42\x00" + HELLO) == [(0, Hello(500))]
    assert parser.stats.dropped_cobs == 1 and parser.stats.bytes_discarded == 3
    # Garbage glued to a frame spoils that frame only; the next one is recovered.
    assert parser.feed(b"\x05\x05" + HELLO + ENABLE) == [(1, Enable())]
    assert parser.stats.dropped_total == 2 and parser.stats.frames_ok == 2


def test_parser_takes_any_buffer() -> None:
    parser = FrameParser()
    assert parser.feed(bytearray(HELLO[:5])) == []
    assert parser.feed(memoryview(HELLO[5:])) == [(0, Hello(500))]
    with pytest.raises(TypeError):
        parser.feed(5)  # type: ignore[arg-type]


def test_parser_ignores_empty_frames() -> None:
    parser = FrameParser()
    assert parser.feed(b"\x00\x00" + HELLO + b"\x00\x00\x00") == [(0, Hello(500))]
    assert parser.stats.dropped_total == 0 and parser.stats.bytes_discarded == 0


@pytest.mark.parametrize("chunk", [1, 7, 256, 5000])
def test_parser_drops_overlong_with_bounded_memory(chunk: int) -> None:
    stream = b"\x2a" * 1000 + b"\x00" + HELLO + b"\x01" * 257 + b"\x00" + ENABLE
    parser = FrameParser()
    got = []
    for start in range(0, len(stream), chunk):
        got += parser.feed(stream[start : start + chunk])
        assert len(parser._partial) <= parser.max_frame
    assert got == [(0, Hello(500)), (1, Enable())]
    assert parser.stats.dropped_overlong == 2 and parser.stats.dropped_total == 2
    assert parser.stats.bytes_discarded == 1000 + 257


def test_parser_accepts_frames_up_to_max_frame() -> None:
    parser = FrameParser(max_frame=20)
    frame = encode(Command(1, [0.5]), 2)  # 20 bytes with its delimiter
    assert parser.feed(frame + encode(Command(1, [0.5, 0.5]), 3)) == [(2, Command(1, [0.5]))]
    assert parser.stats.dropped_overlong == 1


def test_parser_checks_counts() -> None:
    parser = FrameParser(n_sensors=4, n_actuators=1)
    good_state = State(0, 0, 0, 0, 0, np.zeros(4, np.float32))
    stream = (
        encode(State(0, 0, 0, 0, 0, np.zeros(3, np.float32)), 0)
        + encode(good_state, 1)
        + encode(Command(0, [1.0, 2.0]), 2)
        + encode(Command(0, [1.0]), 3)
    )
    assert parser.feed(stream) == [(1, good_state), (3, Command(0, [1.0]))]
    assert parser.stats.dropped_length == 2
    with pytest.raises(p.LengthError, match="expected 34"):
        decode_frame(encode(State(0, 0, 0, 0, 0, [1.0]), 0)[:-1], n_sensors=4)


def test_decode_keeps_unknown_codes_as_ints() -> None:
    seq, state = decode_frame(encode(State(1, 0x8001, 77, 2, 3, []), 9)[:-1])
    assert isinstance(state, State)
    assert state.status == 0x8001 and Status.ENABLED in state.status
    assert state.fault == 77
    _, ack = decode_frame(encode(Ack(0, 0x99, 0x42), 0)[:-1])
    assert ack == Ack(0, 0x99, 0x42)
    body = bytes.fromhex("01 40 00000000 0100 0000000000000000 02 ffe9")  # non-ASCII text
    _, fault = decode_frame(p.frame_body(body)[:-1])
    assert fault == Fault(FaultCode.WATCHDOG, 0, "\ufffd\ufffd")


def test_stats_as_dict() -> None:
    parser = FrameParser()
    parser.feed(HELLO + b"\x01\x00")
    assert parser.stats.as_dict() == {
        "frames_ok": 1,
        "dropped_cobs": 0,
        "dropped_short": 1,
        "dropped_crc": 0,
        "dropped_version": 0,
        "dropped_type": 0,
        "dropped_length": 0,
        "dropped_overlong": 0,
        "bytes_discarded": 1,
        "dropped_total": 1,
    }
