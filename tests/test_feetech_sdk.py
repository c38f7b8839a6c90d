"""The vendor's own SDK (feetech-servo-sdk, `scservo_sdk`) as an independent witness:

1. it produces reference packets on a pty, and our encoders produce the same bytes;
2. as a client of our emulated servos (PortHandler + PacketHandler ping/read/write,
   GroupSyncRead/GroupSyncWrite) it gets the values the emulator holds, and FeetechBus
   on the same pty gets the same values.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest
import scservo_sdk as scs  # the test extra's feetech-servo-sdk: a missing SDK fails here
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.sim.feetech_servos import BusEmulator
from firmware_bridge.wire.feetech import (
    FeetechBus,
    encode_action,
    encode_ping,
    encode_read,
    encode_sync_read,
    encode_sync_write,
    encode_write,
)
from firmware_bridge.wire.feetech_table import (
    ErrorBit,
    Reg,
    decode_value,
    encode_value,
    from_sign_magnitude,
    to_sign_magnitude,
)

IDS = [1, 2, 3, 4, 5, 6]
POS = Reg.PRESENT_POSITION.address
GOAL = Reg.GOAL_POSITION.address


@pytest.fixture
def pty() -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    os.close(slave)
    yield master, path
    os.close(master)


def sdk_port(path: str):
    port = scs.PortHandler(path)
    assert port.openPort() and port.setBaudRate(1_000_000)
    return port, scs.PacketHandler(0)  # protocol end 0: little-endian (STS/SMS)


def drain(master: int, settle_s: float = 0.05) -> bytes:
    time.sleep(settle_s)
    os.set_blocking(master, False)
    try:
        return os.read(master, 4096)
    except BlockingIOError:
        return b""


# ------------------------------------------------------------------------------ packets


def test_sdk_packets_equal_ours(pty):
    master, path = pty
    port, ph = sdk_port(path)
    try:
        drain(master, 0)
        cases = []
        ph.write2ByteTxOnly(port, 1, GOAL, 2048)
        cases.append((drain(master), encode_write(1, GOAL, encode_value(Reg.GOAL_POSITION, 2048))))
        ph.write1ByteTxOnly(port, 3, Reg.TORQUE_ENABLE.address, 1)
        cases.append((drain(master), encode_write(3, 40, b"\x01")))
        ph.regWriteTxOnly(port, 2, GOAL, 2, [0x34, 0x12])
        cases.append((drain(master), encode_write(2, GOAL, b"\x34\x12", held=True)))
        ph.action(port, scs.BROADCAST_ID)
        cases.append((drain(master), encode_action()))
        ph.ping(port, 5)  # no servo: it times out after sending
        cases.append((drain(master), encode_ping(5)))
        ph.read2ByteTx(port, 4, POS)  # leaves the port "in use" until a readRx: reset it
        port.is_using = False
        cases.append((drain(master), encode_read(4, POS, 2)))

        reader = scs.GroupSyncRead(port, ph, POS, 6)
        for sid in IDS:
            reader.addParam(sid)
        reader.txPacket()
        port.is_using = False  # as after read2ByteTx
        cases.append((drain(master), encode_sync_read(IDS, POS, 6)))

        writer = scs.GroupSyncWrite(port, ph, GOAL, 2)
        goals = [100, 4095, 0, 2048, 7, 3000]
        for sid, g in zip(IDS, goals, strict=True):
            writer.addParam(sid, [scs.SCS_LOBYTE(g), scs.SCS_HIBYTE(g)])
        writer.txPacket()
        rows = [encode_value(Reg.GOAL_POSITION, g) for g in goals]
        cases.append((drain(master), encode_sync_write(IDS, GOAL, rows)))
    finally:
        port.closePort()
    for sdk, ours in cases:
        assert sdk == ours


@given(st.sampled_from([10, 11, 15]), st.data())
def test_sign_magnitude_agrees_with_the_sdk(bit, data):
    value = data.draw(st.integers(-((1 << bit) - 1), (1 << bit) - 1))
    raw = to_sign_magnitude(value, bit)
    assert raw == scs.SCS_TOSCS(value, bit)
    assert from_sign_magnitude(raw, bit) == scs.SCS_TOHOST(raw, bit) == value


# ------------------------------------------------------------------------------ the SDK as a client


@pytest.fixture
def served(pty) -> Iterator[tuple[BusEmulator, str]]:
    master, path = pty
    emu = BusEmulator(IDS, master)
    stop = threading.Event()
    thread = threading.Thread(target=emu.serve_forever, args=(stop,), daemon=True)
    thread.start()
    yield emu, path
    stop.set()
    thread.join(2)


def _sdk_session(emu: BusEmulator, path: str) -> dict[str, object]:
    """Everything the SDK reads and does against the emulator."""
    port, ph = sdk_port(path)
    out: dict[str, object] = {}
    try:
        out["ping"] = ph.ping(port, 1)
        out["pos3"] = ph.read2ByteTxRx(port, 3, POS)
        out["write"] = ph.write2ByteTxRx(port, 2, GOAL, 1500)
        out["goal2"] = emu.servo(2).goal_position
        reader = scs.GroupSyncRead(port, ph, POS, 2)
        for sid in IDS:
            assert reader.addParam(sid)
        out["sync_read_result"] = reader.txRxPacket()
        out["sync_read"] = {sid: reader.getData(sid, POS, 2) for sid in IDS}
        writer = scs.GroupSyncWrite(port, ph, GOAL, 2)
        for sid in IDS:
            g = 1000 + sid
            writer.addParam(sid, [scs.SCS_LOBYTE(g), scs.SCS_HIBYTE(g)])
        out["sync_write_result"] = writer.txPacket()
        time.sleep(0.05)  # no answer to wait for: let the emulator take it
        emu.servo(4).error_bits = ErrorBit.OVERHEAT
        out["errored"] = ph.read2ByteTxRx(port, 4, POS)
    finally:
        port.closePort()
    return out


def test_sdk_and_our_client_see_the_same_servos(served):
    emu, path = served
    for sid in IDS:
        emu.servo(sid).set_present(position=300 * sid + 11)
    sdk = _sdk_session(emu, path)
    ok = scs.COMM_SUCCESS
    assert sdk["ping"] == (777, ok, 0)
    assert sdk["pos3"] == (911, ok, 0)
    assert sdk["write"] == (ok, 0) and sdk["goal2"] == 1500
    assert sdk["sync_read_result"] == ok
    assert sdk["sync_read"] == {sid: 300 * sid + 11 for sid in IDS}
    assert sdk["sync_write_result"] == ok
    assert [emu.servo(s).goal_position for s in IDS] == [1000 + s for s in IDS]
    assert sdk["errored"] == (1211, ok, int(ErrorBit.OVERHEAT))

    with FeetechBus(path, timeout_s=0.2, raise_on_servo_error=False) as bus:
        assert bus.ping(1) == sdk["ping"][0]
        rows = bus.sync_read(IDS, POS, 2)
        assert {s: decode_value(Reg.PRESENT_POSITION, rows[s]) for s in IDS} == sdk["sync_read"]
        assert [bus.read_register(s, Reg.GOAL_POSITION) for s in IDS] == [1000 + s for s in IDS]
        assert bus.read_register(4, Reg.PRESENT_POSITION) == sdk["errored"][0]
        assert bus.error_bits(4) == sdk["errored"][2]
