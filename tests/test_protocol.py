"""Wire protocol v1: exact bytes of every message, CRC and COBS against independent
implementations, the shared test vectors, the stream parser's drops and resynchronization,
and property tests (no input makes the parser raise, no corrupted frame is accepted)."""

from __future__ import annotations

import contextlib
import struct
import zlib
from pathlib import Path

import crc
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.firmware import make_vectors
from firmware_bridge.wire import protocol as p
from firmware_bridge.wire.protocol import (
    Ack,
    Command,
    CommandEncoder,
    Disable,
    Enable,
    Fault,
    FaultCode,
    FrameParser,
    Hello,
    Info,
    MsgType,
    ProtocolError,
    State,
    Status,
    decode_frame,
    encode,
    encode_payload,
    frame_size,
)

VECTORS = Path(p.__file__).parents[1] / "firmware" / "test_vectors.txt"
CRC32 = crc.Calculator(crc.Crc32.CRC32)


# ------------------------------------------------------------ independent reference framing


def ref_cobs(data: bytes) -> bytes:
    """COBS written from the paper, independent of the `cobs` package. Input that ends right
    after a full 254-byte block gets no trailing empty block (docs/protocol.md)."""
    out = bytearray()
    block = bytearray()
    after_full_block = False
    for byte in data:
        after_full_block = False
        if byte == 0:
            out += bytes([len(block) + 1]) + block
            block.clear()
            continue
        block.append(byte)
        if len(block) == 254:
            out += b"\xff" + block
            block.clear()
            after_full_block = True
    if block or not after_full_block:
        out += bytes([len(block) + 1]) + block
    return bytes(out)


def ref_frame(msg_type: int, seq: int, payload: bytes, version: int = 1) -> bytes:
    body = bytes([version, msg_type]) + seq.to_bytes(4, "little") + payload
    return ref_cobs(body + CRC32.checksum(body).to_bytes(4, "little")) + b"\x00"


def test_reference_cobs_matches_known_encodings() -> None:
    # Examples from the COBS literature (Wikipedia's table), written out by hand.
    assert ref_cobs(b"\x00") == bytes.fromhex("0101")
    assert ref_cobs(b"\x00\x00") == bytes.fromhex("010101")
    assert ref_cobs(b"\x11\x22\x00\x33") == bytes.fromhex("0311220233")
    assert ref_cobs(b"\x11\x00\x00\x00") == bytes.fromhex("0211010101")
    run = bytes(range(1, 255))  # 254 non-zero bytes
    assert ref_cobs(run) == b"\xff" + run
    assert ref_cobs(b"\x00" + run) == b"\x01\xff" + run
    assert ref_cobs(run + b"\x00") == b"\xff" + run + b"\x01\x01"
    assert ref_cobs(bytes(range(1, 256))) == b"\xff" + run + b"\x02\xff"


def test_crc_is_crc32_iso_hdlc() -> None:
    assert zlib.crc32(b"123456789") == 0xCBF43926
    assert CRC32.checksum(b"123456789") == 0xCBF43926


# ----------------------------------------------------------------- exact bytes per message

# (message, seq, payload written out by hand from the tables in docs/protocol.md)
HAND_PAYLOADS = [
    (Hello(500), 0, "f401"),
    (Hello(0), 0xFFFFFFFF, "0000"),
    (
        Info(1, (1, 2, 3), 0xDEADBEEF, 4, 1, 50, 1000, 100, "furuta"),
        0,
        "01 010203 efbeadde 04 01 3200 e803 6400 06 667572757461",
    ),
    (
        State(
            1_234_567,
            Status.ENABLED | Status.STREAMING,
            FaultCode.NONE,
            41,
            0,
            np.array([0.5, -1.25, 0.0, -0.0], np.float32),
        ),
        42,
        "87d6120000000000 0900 0000 29000000 0000 0000003f 0000a0bf 00000000 00000080",
    ),
    (
        State(2**64 - 1, Status.FAULTED, FaultCode.LIMIT, 0xFFFFFFFF, 65535, []),
        7,
        "ffffffffffffffff 0400 0400 ffffffff ffff",
    ),
    (Command(42, [0.75]), 43, "2a000000 0000403f"),
    (Command(7, [-1.0, 0.0, 2.5]), 1_000_000, "07000000 000080bf 00000000 00002040"),
    (Enable(), 1, ""),
    (Disable(), 0xFFFFFFFF, ""),
    (Ack(1, MsgType.ENABLE, FaultCode.NONE), 2, "01000000 30 00"),
    (Ack(0xFFFFFFFE, MsgType.ENABLE, FaultCode.WATCHDOG), 3, "feffffff 30 01"),
    (
        Fault(FaultCode.WATCHDOG, 10_000_000, "no COMMAND"),
        5,
        "0100 8096980000000000 0a 6e6f20434f4d4d414e44",
    ),
    (Fault(FaultCode.ESTOP, 0, ""), 6, "0500 0000000000000000 00"),
]


def sizes_of(msg: p.Message) -> dict[str, int]:
    if isinstance(msg, State):
        return {"n_sensors": len(msg.sensors)}
    if isinstance(msg, Command):
        return {"n_actuators": len(msg.values)}
    if isinstance(msg, Info):
        return {"name_len": len(msg.name)}
    if isinstance(msg, Fault):
        return {"text_len": len(msg.text)}
    return {}


@pytest.mark.parametrize(("msg", "seq", "payload_hex"), HAND_PAYLOADS)
def test_message_exact_bytes(msg: p.Message, seq: int, payload_hex: str) -> None:
    payload = bytes.fromhex(payload_hex)
    assert encode_payload(msg) == payload
    frame = encode(msg, seq)
    assert frame == ref_frame(msg.TYPE, seq, payload)
    assert frame.count(0) == 1 and frame.endswith(b"\x00")
    assert len(frame) == 6 + len(payload) + 6 == frame_size(msg.TYPE, **sizes_of(msg))
    assert decode_frame(frame[:-1]) == (seq, msg)


def test_hello_frame_written_out_by_hand() -> None:
    body = bytes.fromhex("01 01 00000000 f401")
    assert CRC32.checksum(body) == 0x0828C06C
    # data 01 01 00 00 00 00 f4 01 6c c0 28 08: each zero ends a block, the code counts it.
    expected = bytes.fromhex("03 0101 01 01 01 07 f401 6cc02808 00")
    assert encode(Hello(500), 0) == expected
    assert decode_frame(expected[:-1]) == (0, Hello(500))


def test_enable_frame_written_out_by_hand() -> None:
    body = bytes.fromhex("01 30 01000000")
    assert CRC32.checksum(body) == 0x6303ADE5
    assert encode(Enable(), 1) == bytes.fromhex("04 013001 01 01 05 e5ad0363 00")


def test_full_cobs_block_has_no_trailing_code() -> None:
    seq, command = next((s, m) for n, s, m in make_vectors.ok_vectors() if n.endswith("254"))
    frame = encode(command, seq)
    assert len(frame) == 256 and frame[0] == 0xFF and frame[-1] == 0
    assert frame == ref_frame(MsgType.COMMAND, seq, encode_payload(command))


def test_sizes_and_limits() -> None:
    assert frame_size(MsgType.STATE, n_sensors=4) == 46
    assert frame_size(MsgType.COMMAND, n_actuators=1) == 20
    assert frame_size(MsgType.HELLO) == 14
    assert frame_size(MsgType.ENABLE) == 12
    assert frame_size(MsgType.INFO) == 6 + 17 + 32 + 6
    assert frame_size(MsgType.FAULT) == 6 + 11 + 48 + 6
    assert frame_size(MsgType.COMMAND, n_actuators=60) == 256
    assert len(encode(State(0, 0, 0, 0, 0, np.ones(56, np.float32)), 0)) == 6 + 18 + 224 + 6
    with pytest.raises(ProtocolError, match="57 sensors"):
        encode(State(0, 0, 0, 0, 0, np.ones(57, np.float32)), 0)
    with pytest.raises(ProtocolError, match="61 actuator"):
        encode(Command(0, np.ones(61)), 0)


@pytest.mark.parametrize(
    ("msg", "seq", "match"),
    [
        (Hello(500), -1, "seq"),
        (Hello(500), 2**32, "seq"),
        (Hello(65536), 0, "state_rate_hz"),
        (Info(1, (1, 2, 3), 0, 4, 1, 50, 1000, 100, "x" * 33), 0, "at most 32"),
        (Info(1, (1, 2, 3), 0, 4, 1, 50, 1000, 100, "fürüta"), 0, "ASCII"),
        (Info(1, (1, 2), 0, 4, 1, 50, 1000, 100, "furuta"), 0, "major, minor, patch"),
        (Info(1, (1, 2, 256), 0, 4, 1, 50, 1000, 100, "furuta"), 0, "firmware_version"),
        (Info(1, (1, 2, 3), 0, 256, 1, 50, 1000, 100, "furuta"), 0, "n_sensors"),
        (State(2**64, 0, 0, 0, 0, []), 0, "t_us"),
        (State(0, 1 << 16, 0, 0, 0, []), 0, "status"),
        (State(0, 0, 0, 0, 0, [1.5]), 0.5, "seq"),
        (Command(-1, [0.0]), 0, "state_seq"),
        (Ack(0, 256, 0), 0, "acked_type"),
        (Fault(FaultCode.SENSOR, 0, "t" * 49), 0, "at most 48"),
        (Fault(70000, 0, ""), 0, "code"),
    ],
)
def test_encode_validates(msg: p.Message, seq: int, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        encode(msg, seq)


def test_messages_normalize_arrays() -> None:
    source = np.array([1.0, 2.0])
    state = State(0, 0, 0, 0, 0, source)
    source[0] = 9.0
    assert state.sensors.dtype == np.float32 and list(state.sensors) == [1.0, 2.0]
    assert not state.sensors.flags.writeable
    assert State(0, 0, 0, 0, 0, [0.0]) != State(0, 0, 0, 0, 0, [-0.0])  # wire bytes differ
    assert Command(1, [float("nan")]) == Command(1, [float("nan")])
    assert len({Command(1, [1.0]), Command(1, [1.0])}) == 1
    with pytest.raises(ProtocolError, match="one-dimensional"):
        Command(0, np.zeros((2, 2)))


def test_not_a_message() -> None:
    with pytest.raises(ProtocolError, match="not a protocol message"):
        encode("HELLO", 0)  # type: ignore[arg-type]


# ------------------------------------------------------------------------- CommandEncoder


def test_command_encoder_matches_encode() -> None:
    encoder = CommandEncoder(3)
    first = encoder.encode(10, 9, [0.1, -0.2, 0.3])
    second = encoder.encode(11, 10, np.array([1.0, 2.0, 3.0], np.float32))
    assert first == encode(Command(9, [0.1, -0.2, 0.3]), 10)  # first is not overwritten
    assert second == encode(Command(10, [1.0, 2.0, 3.0]), 11)
    assert CommandEncoder(1).encode(43, 42, [0.75]) == bytes.fromhex(
        "0401202b0101022a0101010107403f14b0c0b800"
    )


def test_command_encoder_refuses() -> None:
    encoder = CommandEncoder(2)
    with pytest.raises(ProtocolError, match="needs 2"):
        encoder.encode(0, 0, [1.0])
    with pytest.raises(ProtocolError):
        encoder.encode(2**32, 0, [1.0, 2.0])
    with pytest.raises(ProtocolError):
        encoder.encode(0, 0, [1e39, 2.0])  # outside float32
    with pytest.raises(ProtocolError, match="at most 60"):
        CommandEncoder(61)


@given(
    seq=st.integers(0, 2**32 - 1),
    state_seq=st.integers(0, 2**32 - 1),
    values=st.lists(st.floats(width=32), min_size=4, max_size=4),
)
def test_command_encoder_property(seq: int, state_seq: int, values: list[float]) -> None:
    assert CommandEncoder(4).encode(seq, state_seq, values) == encode(
        Command(state_seq, values), seq
    )


# ---------------------------------------------------------------------------- test vectors


def read_vectors() -> list[list[str]]:
    rows = []
    for line in VECTORS.read_text().splitlines():
        if line and not line.startswith("#"):
            fields = line.split(" ")
            assert len(fields) == 6, line
            rows.append(fields)
    return rows


OK_ROWS = [row for row in read_vectors() if row[1] == "ok"]
REJECT_ROWS = [row for row in read_vectors() if row[1] == "reject"]


def test_vectors_cover_the_protocol() -> None:
    assert {int(row[2], 16) for row in OK_ROWS} == {int(kind) for kind in MsgType}
    seqs = {int(row[3]) for row in OK_ROWS}
    assert {0, 0xFFFFFFFF} <= seqs and any(0 < s < 0xFFFFFFFF and s > 2**24 for s in seqs)
    assert len(REJECT_ROWS) >= 8
    assert {row[0].split("_")[0] for row in REJECT_ROWS} == {kind.value for kind in p.DropKind}
    assert any(row[5].startswith("ff") and len(row[5]) == 2 * 256 for row in OK_ROWS)
    assert all(row[2:5] == ["-", "-", "-"] for row in REJECT_ROWS)
    assert all(row[5] == row[5].lower() and row[5].endswith("00") for row in read_vectors())


def test_vectors_file_is_up_to_date() -> None:
    assert VECTORS.read_text() == make_vectors.render()


@pytest.mark.parametrize("row", OK_ROWS, ids=[row[0] for row in OK_ROWS])
def test_ok_vector(row: list[str]) -> None:
    _name, _kind, type_hex, seq_text, payload_hex, frame_hex = row
    msg_type, seq = int(type_hex, 16), int(seq_text)
    payload = b"" if payload_hex == "-" else bytes.fromhex(payload_hex)
    frame = bytes.fromhex(frame_hex)
    assert ref_frame(msg_type, seq, payload) == frame  # independent of protocol.py
    got_seq, msg = decode_frame(frame[:-1])
    assert (got_seq, msg.TYPE) == (seq, msg_type)
    assert encode_payload(msg) == payload
    assert encode(msg, seq) == frame
    assert FrameParser().feed(frame) == [(seq, msg)]


@pytest.mark.parametrize("row", REJECT_ROWS, ids=[row[0] for row in REJECT_ROWS])
def test_reject_vector(row: list[str]) -> None:
    name, frame = row[0], bytes.fromhex(row[5])
    parser = FrameParser()
    assert parser.feed(frame) == []
    kind = p.DropKind(name.split("_")[0])
    assert parser.stats.dropped(kind) == 1 and parser.stats.dropped_total == 1
    assert parser.stats.bytes_discarded == len(frame) - 1
    if kind is not p.DropKind.OVERLONG:
        with pytest.raises(p.FrameError) as caught:
            decode_frame(frame[:-1])
        assert caught.value.kind is kind


def test_all_vectors_in_one_stream() -> None:
    stream = b"".join(bytes.fromhex(row[5]) for row in read_vectors())
    expected = [decode_frame(bytes.fromhex(row[5])[:-1]) for row in OK_ROWS]
    parser = FrameParser()
    got = []
    for start in range(0, len(stream), 37):
        got += parser.feed(stream[start : start + 37])
    assert got == expected
    assert parser.stats.frames_ok == len(OK_ROWS)
    assert parser.stats.dropped_total == len(REJECT_ROWS)


# ---------------------------------------------------------------------------------- parser

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


# ------------------------------------------------------------------------ property tests

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
