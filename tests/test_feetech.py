"""The Feetech STS bus: packets byte for byte against hand-worked examples, sign-magnitude,
the bus budget by hand, the parser on garbage, and FeetechBus against emulated servos on
real pseudo-terminals (ping, read, write, sync read/write, error bits, absent ids, wrong
baud, the emulator's timing). The vendor SDK cross-check is tests/test_feetech_sdk.py."""

from __future__ import annotations

import os
import threading
import time
import tty
from collections.abc import Iterator

import numpy as np
import pytest
import serial
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.sim.feetech_servos import BusEmulator, ServoMemory, line_baud
from firmware_bridge.wire.feetech import (
    FeetechBus,
    PacketParser,
    encode_action,
    encode_packet,
    encode_ping,
    encode_read,
    encode_status,
    encode_sync_read,
    encode_sync_write,
    encode_write,
)
from firmware_bridge.wire.feetech_table import (
    MODEL_STS3215,
    ErrorBit,
    Reg,
    decode_value,
    encode_value,
    from_sign_magnitude,
    to_sign_magnitude,
)
from firmware_bridge.wire.servo_bus import PROTOCOL_1, BusError, bus_budget

IDS = [1, 2, 3, 4, 5, 6]  # SO-101: shoulder_pan .. gripper, as LeRobot assigns them


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# ------------------------------------------------------------------------------ packets

# Worked by hand from the FT-SCS protocol: CHECKSUM = ~(ID + LENGTH + INST + params) & 0xFF.
HAND_WORKED = [
    # PING id 1: 01+02+01 = 04 -> FB
    (encode_ping(1), "FF FF 01 02 01 FB"),
    # READ id 1, PRESENT_POSITION (56 = 0x38), 2 bytes: 01+04+02+38+02 = 41 -> BE
    (encode_read(1, 56, 2), "FF FF 01 04 02 38 02 BE"),
    # WRITE id 1, GOAL_POSITION (42 = 0x2A) = 2048 (00 08 little-endian): sum 3B -> C4
    (encode_write(1, 42, h("00 08")), "FF FF 01 05 03 2A 00 08 C4"),
    # REG_WRITE, the same with instruction 04: sum 3C -> C3
    (encode_write(1, 42, h("00 08"), held=True), "FF FF 01 05 04 2A 00 08 C3"),
    # ACTION broadcast: FE+02+05 = 105 -> low byte 05 -> FA
    (encode_action(), "FF FF FE 02 05 FA"),
    # SYNC READ ids 1,2,3 at 56, 2 bytes: LENGTH = 3 ids + 4 = 07;
    # FE+07+82+38+02+01+02+03 = 1C7 -> C7 -> 38
    (encode_sync_read([1, 2, 3], 56, 2), "FF FF FE 07 82 38 02 01 02 03 38"),
    # SYNC WRITE goal 2048 to id 1 and 4095 (FF 0F) to id 2: LENGTH = 2*(1+2) + 4 = 0A;
    # FE+0A+83+2A+02+01+00+08+02+FF+0F = 2D0 -> D0 -> 2F
    (
        encode_sync_write([1, 2], 42, [h("00 08"), h("FF 0F")]),
        "FF FF FE 0A 83 2A 02 01 00 08 02 FF 0F 2F",
    ),
    # status of id 1, no error, present position 2048: 01+04+00+00+08 = 0D -> F2
    (encode_status(1, 0, h("00 08")), "FF FF 01 04 00 00 08 F2"),
    # status of id 1 with OVERLOAD (0x20), no data: 01+02+20 = 23 -> DC
    (encode_status(1, ErrorBit.OVERLOAD, b""), "FF FF 01 02 20 DC"),
]


@pytest.mark.parametrize(
    ("packet", "expected"),
    HAND_WORKED,
    ids=[
        "ping",
        "read",
        "write",
        "reg_write",
        "action",
        "sync_read",
        "sync_write",
        "status",
        "status_error",
    ],
)
def test_packets_match_hand_worked_bytes(packet, expected):
    assert packet == h(expected)


def test_encoders_refuse_what_the_protocol_cannot_carry():
    with pytest.raises(ValueError, match="servo id"):
        encode_ping(0xFF)
    with pytest.raises(ValueError, match="length"):
        encode_read(1, 56, 0)
    with pytest.raises(ValueError, match="one row per id"):
        encode_sync_write([1, 2], 42, [h("00 08")])
    with pytest.raises(ValueError, match="same length"):
        encode_sync_write([1, 2], 42, [h("00 08"), h("00")])
    with pytest.raises(ValueError, match="over 250"):
        encode_packet(1, 3, bytes(245))


def test_framing_figures_are_the_encoders_lengths():
    ids, n = IDS, 6
    assert len(encode_status(1, 0, bytes(n))) == PROTOCOL_1.status_overhead + n
    assert len(encode_sync_read(ids, 56, n)) == (
        PROTOCOL_1.sync_read_overhead + PROTOCOL_1.sync_read_per_id * len(ids)
    )
    rows = [bytes(2)] * len(ids)
    assert len(encode_sync_write(ids, 42, rows)) == (
        PROTOCOL_1.sync_write_overhead + len(ids) * (PROTOCOL_1.sync_write_per_row + 2)
    )


def test_bus_budget_by_hand():
    # SO-101 tick: sync read of position+speed+load (6 bytes) from 6 servos, sync write of
    # goal position (2 bytes), 1 Mbaud = 10 us a byte, adapter latency 1 ms.
    # request 8 + 6 = 14 B; status 6 + 6 = 12 B x 6 = 72 B; write 8 + 6 x (1 + 2) = 26 B
    # -> 112 B = 1120 us, + 1000 us latency = 2120 us; return delay 20 us adds 6 x 20.
    assert bus_budget(6, 6, 2, 1_000_000, 0, 1000) == pytest.approx(2120e-6)
    assert bus_budget(6, 6, 2, 1_000_000, 20, 1000) == pytest.approx(2240e-6)
    # at 115200 baud the same 112 bytes take 1120 bits*10/115200 s = 9.72 ms
    assert bus_budget(6, 6, 2, 115_200, 0, 0) == pytest.approx(112 * 10 / 115_200)
    with pytest.raises(ValueError, match="n_servos"):
        bus_budget(0, 6, 2, 1_000_000, 0, 0)


# ------------------------------------------------------------------------------ values

SIGNED = [r for r in Reg if r.sign_bit is not None]


def test_memory_table_facts():
    assert (Reg.GOAL_POSITION.address, Reg.PRESENT_POSITION.address) == (42, 56)
    assert {r.name: r.sign_bit for r in SIGNED} == {
        "HOMING_OFFSET": 11,
        "GOAL_POSITION": 15,
        "GOAL_SPEED": 15,
        "PRESENT_POSITION": 15,
        "PRESENT_SPEED": 15,
        "PRESENT_LOAD": 10,
    }
    spans = sorted((r.address, r.end) for r in Reg)
    assert all(a_end <= b for (_, a_end), (b, _) in zip(spans, spans[1:], strict=False))


def test_sign_magnitude_by_hand():
    assert encode_value(Reg.GOAL_POSITION, -5) == h("05 80")  # 0x8005
    assert encode_value(Reg.HOMING_OFFSET, -2047) == h("FF 0F")  # 0x0FFF: bit 11 + 0x7FF
    assert decode_value(Reg.PRESENT_LOAD, h("01 04")) == -1  # 0x0401: bit 10 + 1
    assert decode_value(Reg.PRESENT_LOAD, h("E8 03")) == 1000
    with pytest.raises(ValueError, match="sign bit 11"):
        encode_value(Reg.HOMING_OFFSET, 2048)
    with pytest.raises(ValueError, match="fit"):
        encode_value(Reg.TORQUE_LIMIT, -1)


@given(st.sampled_from(SIGNED), st.data())
def test_sign_magnitude_round_trips(reg, data):
    limit = (1 << reg.sign_bit) - 1
    value = data.draw(st.integers(-limit, limit))
    assert decode_value(reg, encode_value(reg, value)) == value
    assert from_sign_magnitude(to_sign_magnitude(value, reg.sign_bit), reg.sign_bit) == value


# ------------------------------------------------------------------------------ parser

no_ff = st.binary(max_size=40).map(lambda b: bytes(x for x in b if x != 0xFF))


@given(no_ff, st.integers(0, 253), st.binary(max_size=20), no_ff)
def test_parser_finds_a_packet_among_garbage(before, sid, params, after):
    packet = encode_status(sid, 0, params)
    p = PacketParser()
    p.feed(before + packet + after)
    assert p.next_packet() == (sid, 0, params)
    assert p.garbage == len(before)


@given(st.binary(max_size=300), st.integers(1, 17))
def test_parser_never_raises_and_only_yields_checked_packets(data, chunk):
    p = PacketParser()
    for i in range(0, len(data), chunk):
        p.feed(data[i : i + chunk])
        while (pkt := p.next_packet()) is not None:
            assert encode_packet(pkt.servo_id, pkt.code, pkt.params) in data


def test_parser_resyncs_after_a_bad_checksum_and_extra_header_bytes():
    bad = bytearray(encode_status(1, 0, h("00 08")))
    bad[-1] ^= 1
    p = PacketParser()
    p.feed(bytes(bad) + b"\xff" + encode_status(2, 0, h("34 12")))
    assert p.next_packet() == (2, 0, h("34 12"))
    assert p.checksum_errors == 1


# ------------------------------------------------------------------------------ on a pty


@pytest.fixture
def pty() -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    os.close(slave)
    yield master, path
    os.close(master)


@pytest.fixture
def arm(pty) -> Iterator[tuple[BusEmulator, FeetechBus]]:
    """Six emulated STS3215 served from a thread, and our client on the pty."""
    master, path = pty
    emu = BusEmulator(IDS, master)
    stop = threading.Event()
    thread = threading.Thread(target=emu.serve_forever, args=(stop,), daemon=True)
    thread.start()
    bus = FeetechBus(path, timeout_s=0.2)
    yield emu, bus
    bus.close()
    stop.set()
    thread.join(2)


def test_ping_read_write(arm):
    emu, bus = arm
    assert bus.ping(1) == MODEL_STS3215
    assert bus.read_register(2, Reg.MODEL_NUMBER) == 777
    assert bus.read(2, Reg.MODEL_NUMBER.address, 2) == h("09 03")
    bus.write_register(3, Reg.GOAL_POSITION, 1234)
    assert emu.servo(3).goal_position == 1234
    assert bus.read_register(3, Reg.GOAL_POSITION) == 1234
    bus.write_register(3, Reg.TORQUE_ENABLE, 1)
    assert emu.servo(3).torque_enabled
    assert bus.error_bits(3) == 0


def test_sync_read_and_sync_write_six_servos(arm):
    emu, bus = arm
    for i, sid in enumerate(IDS):
        emu.servo(sid).set_present(position=100 * sid, speed=-7 * i, load=-i)
    got = bus.sync_read(IDS, Reg.PRESENT_POSITION.address, 2)
    assert {sid: decode_value(Reg.PRESENT_POSITION, got[sid]) for sid in IDS} == {
        sid: 100 * sid for sid in IDS
    }
    block = np.zeros((6, 6), np.uint8)  # position, speed, load: allocated once
    bus.sync_read_into(IDS, 56, 6, block)
    speeds = [decode_value(Reg.PRESENT_SPEED, row.tobytes(), 56) for row in block]
    loads = [decode_value(Reg.PRESENT_LOAD, row.tobytes(), 56) for row in block]
    assert speeds == [-7 * i for i in range(6)] and loads == [-i for i in range(6)]

    answers = emu.answers
    goals = [2048 + 10 * sid for sid in IDS]
    bus.sync_write(IDS, 42, [encode_value(Reg.GOAL_POSITION, g) for g in goals])
    assert bus.ping(6) == 777  # the next transaction works: no answer was left behind
    assert [emu.servo(s).goal_position for s in IDS] == goals
    assert emu.answers == answers + 2  # PING and READ, none for the sync write


def test_servo_error_bits_raise_or_are_kept(arm):
    emu, bus = arm
    emu.servo(3).error_bits = ErrorBit.VOLTAGE | ErrorBit.OVERLOAD
    with pytest.raises(BusError) as err:
        bus.read(3, 56, 2)
    assert err.value.kind == "servo_error" and err.value.servo_id == 3
    assert err.value.error_names == ("voltage", "overload")
    assert "voltage, overload" in str(err.value)
    with pytest.raises(BusError, match="servo 3"):
        bus.sync_read(IDS, 56, 2)
    assert bus.last_error_bits == {**dict.fromkeys(IDS, 0), 3: 0x21}
    bus.raise_on_servo_error = False
    assert len(bus.sync_read(IDS, 56, 2)) == 6
    assert bus.error_bits(3) == 0x21


def test_absent_id_times_out(arm):
    _emu, bus = arm
    t0 = time.monotonic()
    with pytest.raises(BusError) as err:
        bus.ping(9)
    assert err.value.kind == "timeout" and err.value.servo_id == 9
    assert 0.2 <= time.monotonic() - t0 < 1.5
    with pytest.raises(BusError, match="servo 9") as err:
        bus.sync_read([1, 9, 2], 56, 2)
    assert err.value.kind == "timeout"
    assert bus.ping(2) == 777


def test_eeprom_needs_unlock_and_reg_write_waits_for_action(arm):
    emu, bus = arm
    bus.write_register(4, Reg.ID, 14)  # locked: dropped (the servo still answers)
    assert emu.servo(4).servo_id == 4
    bus.write_register(4, Reg.LOCK, 0)
    bus.write_register(4, Reg.ID, 14)
    assert bus.ping(14) == 777
    bus.reg_write(5, 42, encode_value(Reg.GOAL_POSITION, 3000))
    assert emu.servo(5).goal_position == 2048
    bus.action()
    assert bus.read_register(5, Reg.GOAL_POSITION) == 3000


def test_an_idle_emulator_without_a_client_does_not_spin(pty):
    master, _path = pty  # nobody holds the slave open: the master reads EIO
    emu = BusEmulator(IDS, master)
    polls = []
    stop = threading.Event()

    def clock() -> int:  # serve_forever reads it once a poll: count them
        polls.append(1)
        return time.monotonic_ns()

    thread = threading.Thread(target=emu.serve_forever, args=(stop,), kwargs={"clock": clock})
    thread.start()
    time.sleep(0.3)
    stop.set()
    thread.join(2)
    assert len(polls) < 300  # about one per 5 ms hang-up wait, not a busy loop


def test_wrong_baud_parses_nothing(pty):
    master, path = pty
    emu = BusEmulator(IDS, master)
    stop = threading.Event()
    thread = threading.Thread(target=emu.serve_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        with FeetechBus(path, 115_200, timeout_s=0.1) as bus:
            with pytest.raises(BusError) as err:
                bus.ping(1)
            assert err.value.kind == "timeout"
        assert emu.requests == 0 and emu.garbled_bytes >= 6 and emu.parser.garbage > 0
        with FeetechBus(path, timeout_s=0.2) as bus:  # the right baud: the same servos answer
            assert bus.ping(1) == 777
    finally:
        stop.set()
        thread.join(2)


def _answer_with(master: int, reply: bytes, stop: threading.Event) -> None:
    """A fake bus that answers every request with the given bytes."""
    while not stop.is_set():
        try:
            if os.read(master, 4096):
                os.write(master, reply)
        except OSError:
            time.sleep(0.01)


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (bytes(range(0x10, 0x30)), "malformed"),  # garbage: nothing parses
        (encode_status(1, 0, h("00"))[:-1] + b"\x00", "checksum"),  # corrupt checksum
        (encode_status(1, 0, h("00 08 00")), "malformed"),  # 3 data bytes for a 2-byte read
    ],
    ids=["garbage", "bad_checksum", "wrong_length"],
)
def test_client_reports_bad_answers(pty, reply, kind):
    master, path = pty
    stop = threading.Event()
    thread = threading.Thread(target=_answer_with, args=(master, reply, stop), daemon=True)
    with FeetechBus(path, timeout_s=0.1) as bus:
        thread.start()
        with pytest.raises(BusError) as err:
            bus.read(1, 56, 2)
    stop.set()
    thread.join(2)
    assert err.value.kind == kind


def test_client_resyncs_past_garbage_to_the_answer(pty):
    master, path = pty
    stop = threading.Event()
    reply = b"\x00\x13\xff" + encode_status(1, 0, h("00 08"))
    thread = threading.Thread(target=_answer_with, args=(master, reply, stop), daemon=True)
    with FeetechBus(path, timeout_s=0.2) as bus:
        thread.start()
        assert bus.read(1, 56, 2) == h("00 08")
    stop.set()
    thread.join(2)


# ------------------------------------------------------------------------------ timing


@pytest.fixture
def raw_pty() -> Iterator[tuple[int, int]]:
    """A pty whose slave we drive by hand at 1 Mbaud (no client)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    ser = serial.Serial(os.ttyname(slave), 1_000_000)  # sets the line's baud rate
    yield master, slave
    ser.close()
    os.close(slave)
    os.close(master)


def _readable(fd: int) -> bytes:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return b""


def test_answers_wait_for_return_delay_and_wire_time(raw_pty):
    master, slave = raw_pty
    assert line_baud(master) == 1_000_000
    servo = ServoMemory(1, {Reg.RETURN_DELAY: 250})  # 250 x 2 us = 500 us
    emu = BusEmulator([servo], master)
    os.write(slave, encode_ping(1))
    emu.poll(0)
    # 6 request bytes + 6 answer bytes at 10 us each, + 500 us
    assert emu.next_due_ns() == 120_000 + 500_000
    emu.poll(619_999)
    assert _readable(slave) == b""
    emu.poll(620_000)
    assert _readable(slave) == encode_status(1, 0)


def test_sync_read_answers_in_listed_order_and_broadcasts_get_none(raw_pty):
    master, slave = raw_pty
    emu = BusEmulator(IDS, master)
    os.write(slave, encode_sync_read([3, 1, 9, 2], 56, 2))  # 9 is absent: silent
    emu.poll(0)
    emu.poll(10**9)
    got = _readable(slave)
    p = PacketParser()
    p.feed(got)
    order = []
    while (pkt := p.next_packet()) is not None:
        order.append(pkt.servo_id)
    assert order == [3, 1, 2]
    for packet in (
        encode_write(0xFE, 40, b"\x01"),
        encode_sync_write([1, 2], 42, [bytes(2), bytes(2)]),
        encode_action(),
    ):
        os.write(slave, packet)
    emu.poll(2 * 10**9)
    emu.poll(3 * 10**9)
    assert _readable(slave) == b""
    assert all(emu.servo(s).torque_enabled for s in IDS)


def test_response_level_zero_answers_only_ping_and_read(raw_pty):
    master, slave = raw_pty
    emu = BusEmulator([ServoMemory(1, {Reg.RESPONSE_LEVEL: 0})], master, wire_time=False)
    os.write(slave, encode_write(1, 42, h("00 04")))
    emu.poll(0)
    assert _readable(slave) == b""
    os.write(slave, encode_read(1, 42, 2))
    emu.poll(1)
    assert _readable(slave) == encode_status(1, 0, h("00 04"))
