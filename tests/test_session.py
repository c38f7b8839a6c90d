"""The host session and the Python controller, in process on real pseudo-terminals:
ENABLE/DISABLE answered only by their own ACK, DISABLE on a dead link, the control period
against the watchdog, and the controller's LIMIT fault on the robot's envelope."""

from __future__ import annotations

import os
import threading
import time
import tty

import numpy as np
import pytest

from envs.robots import get_robot
from envs.robots.furuta import ARM_TRAVEL
from firmware_bridge.sim.controller import Controller, ControllerConfig
from firmware_bridge.wire.link import SerialLink
from firmware_bridge.wire.protocol import (
    Ack,
    Disable,
    Enable,
    Fault,
    FaultCode,
    FrameParser,
    Hello,
    MsgType,
    State,
    encode,
)
from firmware_bridge.wire.session import HandshakeError, check_period, disable, enable


class Peer:
    """The far end of a pty: answers each ENABLE/DISABLE the host sends as `answer` says."""

    def __init__(self, answer) -> None:
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.slave = slave
        self.port = os.ttyname(slave)
        os.set_blocking(self.master, False)
        self.answer = answer
        self.seen: list[tuple[int, MsgType]] = []
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        parser = FrameParser()
        while not self._stop:
            try:
                data = os.read(self.master, 4096)
            except (BlockingIOError, OSError):
                data = b""
            for seq, msg in parser.feed(data):
                self.seen.append((seq, msg.TYPE))
                for reply in self.answer(seq, msg):
                    os.write(self.master, encode(reply, 0))
            time.sleep(0.001)

    def close(self) -> None:
        self._stop = True
        self._t.join(timeout=2)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def peer():
    made: list[Peer] = []

    def make(answer) -> Peer:
        made.append(Peer(answer))
        return made[-1]

    yield make
    for p in made:
        p.close()


def test_enable_is_answered_only_by_its_own_ack(peer):
    """An ACK of an earlier ENABLE (a stale one on the line) does not confirm this one."""

    def stale_only(seq, msg):
        return [Ack(seq - 1, MsgType.ENABLE, 0)] if isinstance(msg, Enable) else []

    p = peer(stale_only)
    with SerialLink(p.port) as link:
        link.next_seq()  # the ENABLE goes out with seq 1: a stale ACK names seq 0
        with pytest.raises(HandshakeError, match="did not acknowledge ENABLE"):
            enable(link, 0.3)

    def both(seq, msg):
        if isinstance(msg, Enable):
            return [Ack(seq - 1, MsgType.ENABLE, FaultCode.WATCHDOG), Ack(seq, MsgType.ENABLE, 0)]
        return []

    p = peer(both)
    with SerialLink(p.port) as link:
        link.next_seq()
        enable(link, 1.0)  # the stale refusal is skipped, its own ACK accepted


def test_disable_is_answered_only_by_its_own_ack(peer):
    def stale_only(seq, msg):
        return [Ack(seq + 100, MsgType.DISABLE, 0)] if isinstance(msg, Disable) else []

    p = peer(stale_only)
    with SerialLink(p.port) as link:
        d = disable(link, 0.1, tries=2)
    assert not d.confirmed and d.link_lost is None
    assert [t for _, t in p.seen].count(MsgType.DISABLE) == 2


def test_disable_on_a_dead_link_reports_instead_of_raising(peer):
    """The port goes away while DISABLE waits for its ACK: reported, never raised."""
    p = peer(lambda seq, msg: [])
    link = SerialLink(p.port)
    killer = threading.Timer(0.05, lambda: os.close(p.master))
    killer.start()
    try:
        d = disable(link, 0.5, tries=3)
    finally:
        killer.join()
        p.master = os.open(os.devnull, os.O_RDONLY)  # for close()
        link.close()
    assert not d.confirmed and d.link_lost is not None and p.port in d.link_lost


@pytest.mark.parametrize(
    "rate,watchdog,stale,ok",
    [(100, 50, 50, True), (20, 50, 50, False), (25, 50, 50, True), (40, 50, 20, False)],
)
def test_period_against_watchdog_and_stale_limit(rate, watchdog, stale, ok):
    if ok:
        check_period(rate, watchdog, stale)
    else:
        with pytest.raises(HandshakeError, match="is not shorter than"):
            check_period(rate, watchdog, stale)


def _controller() -> tuple[Controller, list]:
    spec = get_robot("furuta")
    sent: list = []
    parser = FrameParser(n_sensors=4)
    ctl = Controller(
        ControllerConfig.for_spec(spec, watchdog_ms=50),
        lambda b: sent.extend(m for _, m in parser.feed(b)),
    )
    return ctl, sent


def test_controller_raises_limit_outside_the_envelope_while_armed():
    """The state machine behind sim_robot raises LIMIT as the C firmware does (same text),
    at the first STATE outside the spec's envelope, and only while armed."""
    ctl, sent = _controller()
    ctl.handle(0, Hello(100), 0)
    beyond = np.array([ARM_TRAVEL + 0.01, 0.0, 0.0, 0.0])
    ctl.poll(10_000, lambda: beyond)  # disarmed: reported, not a fault
    assert ctl.fault == FaultCode.NONE
    ctl.handle(1, Enable(), 20_000)
    inside = np.array([ARM_TRAVEL, 0.0, 0.0, 0.0])
    ctl.poll(30_000, lambda: inside)  # the edge is inside
    assert ctl.fault == FaultCode.NONE and ctl.enabled
    ctl.poll(40_000, lambda: beyond)
    assert ctl.fault == FaultCode.LIMIT and not ctl.enabled
    faults = [m for m in sent if isinstance(m, Fault)]
    assert len(faults) == 1 and faults[0].text == "sensor 0 outside its safe range"
    last = [m for m in sent if isinstance(m, State)][-1]
    assert last.fault == FaultCode.LIMIT  # the STATE after the FAULT carries it
    ctl.handle(2, Enable(), 50_000)
    assert not ctl.enabled  # latched until DISABLE


def test_controller_limit_on_a_non_finite_reading():
    ctl, sent = _controller()
    ctl.handle(0, Hello(100), 0)
    ctl.handle(1, Enable(), 0)
    ctl.poll(10_000, lambda: np.array([0.0, np.nan, 0.0, 0.0]))
    assert ctl.fault == FaultCode.LIMIT
    assert [m.text for m in sent if isinstance(m, Fault)] == ["sensor 1 outside its safe range"]
