"""The serial link on real transports (a pseudo-terminal, loop://, a TCP socket): frames in
and out byte for byte, handshake waits, the one-line errors naming the port, exclusive
open, the link budget figures and the USB latency checks."""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import serial

from firmware_bridge.wire.link import (
    LinkBudgetError,
    LinkError,
    SerialLink,
    _open_error,
    check_link_budget,
    latency_warning,
    link_budget,
    request_low_latency,
    usb_latency_timer_ms,
)
from firmware_bridge.wire.protocol import (
    Disable,
    Enable,
    Hello,
    Info,
    Message,
    State,
    Status,
    encode,
)

INFO = Info(1, (1, 2, 3), 7, 4, 1, 50, 1000, 100, "furuta")


def state(seq: int) -> State:
    return State(seq * 2000, Status.STREAMING, 0, 0xFFFFFFFF, 0, np.arange(4, dtype=np.float32))


@pytest.fixture
def pty() -> Iterator[tuple[int, str]]:
    """A pseudo-terminal: (master fd, slave path). The slave is a real tty for pyserial."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    os.close(slave)  # pyserial opens the path itself; the pty lives while master is open
    yield master, path
    os.close(master)


def poll_until(link: SerialLink, count: int, timeout_s: float = 2.0) -> list[tuple[int, Message]]:
    got: list[tuple[int, Message]] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        got += link.poll()
        time.sleep(0.001)
    return got


def read_master(master: int, size: int, timeout_s: float = 2.0) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout_s
    while len(data) < size and time.monotonic() < deadline:
        os.set_blocking(master, False)
        try:
            data += os.read(master, size - len(data))
        except BlockingIOError:
            time.sleep(0.001)
    return data


def test_pty_frames_in_and_out(pty: tuple[int, str]) -> None:
    master, path = pty
    with SerialLink(path, 115200) as link:
        stream = encode(INFO, 0) + encode(state(1), 1) + b"\x99\x00" + encode(state(2), 2)
        os.write(master, stream[:17])  # a frame split across reads
        time.sleep(0.01)
        os.write(master, stream[17:])
        assert poll_until(link, 3) == [(0, INFO), (1, state(1)), (2, state(2))]
        assert link.bytes_in == len(stream)
        assert link.parser_stats.frames_ok == 3 and link.parser_stats.dropped_cobs == 1

        assert link.send_message(Hello(500)) == 0
        link.send(encode(Enable(), link.next_seq()))
        expected = encode(Hello(500), 0) + encode(Enable(), 1)
        assert read_master(master, len(expected)) == expected
        assert link.bytes_out == len(expected)


def test_pty_wait_for_skips_then_keeps_the_rest(pty: tuple[int, str]) -> None:
    master, path = pty
    with SerialLink(path) as link:
        os.write(master, encode(state(1), 1) + encode(INFO, 2) + encode(state(3), 3))
        assert link.wait_for(lambda m: isinstance(m, Info), timeout_s=2.0) == INFO
        assert poll_until(link, 1) == [(3, state(3))]


def test_wait_for_times_out_on_the_given_clock() -> None:
    now = [100.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    with SerialLink("loop://") as link:
        link.send_message(Hello(5))
        got = link.wait_for(lambda m: isinstance(m, Info), 0.01, clock=lambda: now[0], sleep=sleep)
    assert got is None
    assert len(sleeps) == 10 and now[0] == pytest.approx(100.01)


def test_loop_url() -> None:
    with SerialLink("loop://", 1_000_000) as link:
        link.send_message(Hello(250))
        link.send_message(Disable())
        assert link.poll() == [(0, Hello(250)), (1, Disable())]
        assert link.bytes_in == link.bytes_out == 14 + 12


def test_socket_url() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    try:
        with SerialLink(f"socket://127.0.0.1:{port}") as link:
            peer, _ = server.accept()
            with peer:
                peer.sendall(encode(INFO, 9))
                assert poll_until(link, 1) == [(9, INFO)]
                link.send_message(Hello(100))
                assert peer.recv(100) == encode(Hello(100), 0)
    finally:
        server.close()


def test_from_serial_and_close() -> None:
    ser = serial.serial_for_url("loop://", timeout=0)
    link = SerialLink.from_serial(ser, port="loop://", n_sensors=4)
    link.send(encode(state(1), 1) + encode(State(0, 0, 0, 0, 0, [1.0]), 2))
    assert link.poll() == [(1, state(1))]  # the STATE with 1 sensor is a length drop
    assert link.parser_stats.dropped_length == 1
    link.close()
    link.close()
    assert not ser.is_open
    with pytest.raises(LinkError, match="loop:// is closed"):
        link.poll()


def test_missing_port() -> None:
    with pytest.raises(LinkError) as caught:
        SerialLink("/dev/ttyDOESNOTEXIST0")
    message = str(caught.value)
    assert message.startswith("serial port /dev/ttyDOESNOTEXIST0 does not exist")
    assert "\n" not in message


def test_exclusive_open_refuses_a_second_open(pty: tuple[int, str]) -> None:
    _, path = pty
    with SerialLink(path):
        with pytest.raises(LinkError) as caught:
            SerialLink(path)
        assert str(caught.value) == f"serial port {path} is busy: another program has it open"
    with SerialLink(path):  # free again once the first link is closed
        pass


def test_not_a_serial_port(tmp_path: Path) -> None:
    plain = tmp_path / "plain_file"
    plain.write_bytes(b"")
    with pytest.raises(LinkError, match=rf"^{plain} is not a serial port"):
        SerialLink(str(plain))


def test_unknown_url_scheme() -> None:
    with pytest.raises(LinkError, match="nope://x"):
        SerialLink("nope://x")


@pytest.mark.skipif(os.geteuid() == 0, reason="root opens any file")
def test_permission_denied(pty: tuple[int, str]) -> None:
    _, path = pty
    os.chmod(path, 0)
    with pytest.raises(LinkError, match=f"permission denied opening serial port {path}"):
        SerialLink(path)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (errno.ENOENT, "serial port /dev/ttyX does not exist (is the board plugged in?)"),
        (errno.EACCES, "permission denied opening serial port /dev/ttyX (on Linux, add"),
        (errno.EBUSY, "serial port /dev/ttyX is busy: another program has it open"),
        (errno.EAGAIN, "serial port /dev/ttyX is busy: another program has it open"),
        (errno.EIO, "could not open serial port /dev/ttyX: "),
    ],
)
def test_open_error_messages(code: int, expected: str) -> None:
    error = serial.SerialException(code, f"could not open port /dev/ttyX: [Errno {code}]")
    message = str(_open_error("/dev/ttyX", error))
    assert message.startswith(expected) and "\n" not in message


# ------------------------------------------------------------------------------ budget


def test_link_budget_figures() -> None:
    # STATE, 4 sensors: body 6 + 18 + 16 = 40, + 4 CRC + 1 COBS code + 1 delimiter = 46.
    # COMMAND, 1 actuator: body 6 + 4 + 4 = 14, + 6 = 20.
    budget = link_budget(115200, 500, n_sensors=4, n_actuators=1)
    assert (budget.state_frame_bytes, budget.command_frame_bytes) == (46, 20)
    assert (budget.state_bits_per_s, budget.command_bits_per_s) == (230_000, 100_000)
    assert budget.utilisation == pytest.approx(230_000 / 115_200)
    assert not budget.fits
    assert budget.max_rate_hz == pytest.approx(115_200 / 460)

    fits = check_link_budget(115200, 250, n_sensors=4, n_actuators=1)
    assert fits.state_bits_per_s == 115_000 and fits.utilisation == pytest.approx(0.99826, 1e-4)
    assert check_link_budget(230400, 500, 4, 1).command_utilisation == pytest.approx(100 / 230.4)


def test_link_budget_refusal_names_the_figures() -> None:
    with pytest.raises(LinkBudgetError) as caught:
        check_link_budget(115200, 500, n_sensors=4, n_actuators=1)
    assert str(caught.value) == (
        "500 Hz does not fit 115200 baud: STATE frames of 46 bytes need 230000 bit/s; "
        "at 115200 baud the highest rate is 250 Hz"
    )
    with pytest.raises(LinkBudgetError, match=r"^1000 Hz does not fit 9600 baud: .* 460000 bit/s"):
        check_link_budget(9600, 1000, n_sensors=4, n_actuators=1)
    with pytest.raises(LinkBudgetError, match="COMMAND frames of 256 bytes need 256000 bit/s"):
        check_link_budget(115200, 100, n_sensors=0, n_actuators=60)


# ----------------------------------------------------------------------------- latency


def test_request_low_latency_never_raises(pty: tuple[int, str]) -> None:
    _, path = pty
    with SerialLink(path) as link:
        assert request_low_latency(link.serial) is False  # a pty has no serial_struct
    assert request_low_latency(serial.serial_for_url("loop://")) is False

    class Refusing:
        def set_low_latency_mode(self, on: bool) -> None:
            raise ValueError("Failed to update ASYNC_LOW_LATENCY flag")

    class Accepting:
        def set_low_latency_mode(self, on: bool) -> None:
            pass

    assert request_low_latency(Refusing()) is False  # type: ignore[arg-type]
    assert request_low_latency(Accepting()) is True  # type: ignore[arg-type]


def test_usb_latency_timer(tmp_path: Path) -> None:
    sysfs = tmp_path / "sys"
    timer = sysfs / "bus" / "usb-serial" / "devices" / "ttyUSB0" / "latency_timer"
    timer.parent.mkdir(parents=True)
    timer.write_text("16\n")
    by_id = tmp_path / "usb-FTDI_TTL232R-if00-port0"
    by_id.symlink_to("/dev/ttyUSB0")

    assert usb_latency_timer_ms("/dev/ttyUSB0", sysfs=sysfs) == 16
    assert usb_latency_timer_ms(str(by_id), sysfs=sysfs) == 16
    assert usb_latency_timer_ms("/dev/ttyACM0", sysfs=sysfs) is None
    assert usb_latency_timer_ms("loop://", sysfs=sysfs) is None

    warning = latency_warning("/dev/ttyUSB0", 500, sysfs=sysfs)
    assert warning is not None
    assert warning.startswith(
        "USB latency timer of /dev/ttyUSB0 is 16 ms, longer than the 2 ms control period at 500 Hz"
    )
    assert str(timer) in warning
    assert latency_warning("/dev/ttyUSB0", 50, sysfs=sysfs) is None  # 20 ms period
    timer.write_text("1\n")
    assert latency_warning("/dev/ttyUSB0", 1000, sysfs=sysfs) is None
    assert latency_warning("/dev/ttyACM0", 1000, sysfs=sysfs) is None
