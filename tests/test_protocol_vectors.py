"""Wire protocol v1, the shared test vectors (firmware/test_vectors.txt, read by the C tests
too): they cover every message type and drop reason, are up to date with make_vectors, and
each decodes (or is dropped) as it says, alone and all in one stream."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_bridge.firmware import make_vectors
from firmware_bridge.wire import protocol as p
from firmware_bridge.wire.protocol import FrameParser, MsgType, decode_frame, encode, encode_payload
from tests.protocol_reference import ref_frame

VECTORS = Path(p.__file__).parents[1] / "firmware" / "test_vectors.txt"


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
