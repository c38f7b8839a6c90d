"""Wire protocol v1, encoding: the reference framing against known encodings, the exact
bytes of every message (written out by hand from docs/protocol.md), sizes and limits, what
encode refuses, and CommandEncoder against encode."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given
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
from tests.protocol_reference import CRC32, ref_cobs, ref_frame


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
