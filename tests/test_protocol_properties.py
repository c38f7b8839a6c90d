"""Wire protocol v1, property tests: every message round-trips, frames in garbage are
recovered in order, no corrupted or truncated frame is accepted, and no input makes the
parser or the decoder raise anything but a frame error."""

from __future__ import annotations

import contextlib
import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.wire import protocol as p
from firmware_bridge.wire.protocol import (
    Ack,
    Command,
    Disable,
    Enable,
    Fault,
    FrameParser,
    Hello,
    Info,
    State,
    Status,
    decode_frame,
    encode,
    encode_payload,
)

u8, u16 = st.integers(0, 2**8 - 1), st.integers(0, 2**16 - 1)
u32, u64 = st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1)


def f32_arrays(max_size: int) -> st.SearchStrategy[np.ndarray]:
    return st.lists(st.floats(width=32), max_size=max_size).map(
        lambda values: np.array(values, np.float32)
    )


def ascii_text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(min_codepoint=0, max_codepoint=127), max_size=max_size)


messages = st.one_of(
    st.builds(Hello, u16),
    st.builds(Info, u8, st.tuples(u8, u8, u8), u32, u8, u8, u16, u16, u16, ascii_text(32)),
    st.builds(State, u64, u16.map(Status), u16, u32, u16, f32_arrays(56)),
    st.builds(Command, u32, f32_arrays(60)),
    st.just(Enable()),
    st.just(Disable()),
    st.builds(Ack, u32, u8, u8),
    st.builds(Fault, u16, u64, ascii_text(48)),
)


@given(messages, u32)
def test_round_trip(msg: p.Message, seq: int) -> None:
    frame = encode(msg, seq)
    assert decode_frame(frame[:-1]) == (seq, msg)
    assert len(frame) == 6 + len(encode_payload(msg)) + 6 <= 256


@settings(deadline=None)
@given(
    st.lists(st.tuples(st.binary(max_size=40), messages, u32), max_size=8),
    st.lists(st.integers(0, 3000), max_size=6),
)
def test_frames_in_garbage_are_recovered_in_order(
    items: list[tuple[bytes, p.Message, int]], cuts: list[int]
) -> None:
    stream = b"".join(garbage + b"\x00" + encode(msg, seq) for garbage, msg, seq in items)
    bounds = [0, *sorted(c for c in cuts if c < len(stream)), len(stream)]
    parser = FrameParser()
    got = []
    for start, end in zip(bounds, bounds[1:], strict=False):
        got += parser.feed(stream[start:end])
    assert got == [(seq, msg) for _, msg, seq in items]


@given(messages, u32, st.data())
def test_corrupted_byte_is_never_accepted(msg: p.Message, seq: int, data: st.DataObject) -> None:
    frame = encode(msg, seq)
    i = data.draw(st.integers(0, len(frame) - 2), label="position")
    value = data.draw(st.integers(0, 255).filter(lambda v: v != frame[i]), label="value")
    corrupted = frame[:i] + bytes([value]) + frame[i + 1 :]
    parser = FrameParser()
    assert parser.feed(b"\x00" + corrupted) == []
    assert parser.stats.dropped_total >= 1


@given(messages, u32, st.data())
def test_truncated_frame_is_never_accepted(msg: p.Message, seq: int, data: st.DataObject) -> None:
    frame = encode(msg, seq)
    cut = data.draw(st.integers(1, len(frame) - 2), label="cut")
    parser = FrameParser()
    assert parser.feed(frame[:cut] + b"\x00" + frame[cut:]) == []
    assert parser.stats.dropped_total == 2


chunks = st.lists(
    st.one_of(
        st.binary(max_size=300),
        st.builds(encode, messages, u32),
        st.builds(encode, messages, u32).map(lambda frame: frame[: len(frame) // 2]),
        st.sampled_from([b"\x00", b"\xff" * 300, b"\x01" * 10]),
    ),
    max_size=12,
)


@settings(deadline=None)
@given(chunks, st.sampled_from([None, 4]), st.sampled_from([None, 1]))
def test_parser_never_raises(data: list[bytes], n_sensors: int | None, n_act: int | None) -> None:
    parser = FrameParser(n_sensors=n_sensors, n_actuators=n_act)
    accepted = sum(len(parser.feed(chunk)) for chunk in data)
    assert parser.stats.frames_ok == accepted
    assert parser.stats.bytes_discarded <= sum(map(len, data))


@given(st.binary(max_size=300))
def test_decode_frame_raises_only_frame_errors(data: bytes) -> None:
    with contextlib.suppress(p.FrameError):
        decode_frame(data)


@given(st.binary(min_size=6, max_size=250).map(lambda b: b"\x01" + b[1:]))
def test_checked_body_fails_only_on_type_or_length(body: bytes) -> None:
    try:
        seq, msg = decode_frame(p.frame_body(body)[:-1])
    except (p.UnknownTypeError, p.LengthError):
        return
    assert seq == struct.unpack_from("<I", body, 2)[0]
    assert body[1] == msg.TYPE
    assert encode(msg, seq) == p.frame_body(body)  # a decodable body re-encodes to itself
