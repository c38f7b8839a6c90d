"""What the control loop needs from the wire, whatever is on it: the newest readings in,
one command out, a count of what was lost.

Two transports exist: our framed protocol to a controller of ours (`FramedTransport`: the
controller streams STATE, the host sends COMMAND frames) and a servo bus straight to the
servos (`host.bus_transport.BusTransport`: each tick one sync read becomes a STATE and a
COMMAND becomes one sync write). The loop (`host.loop.ControlLoop`) is written against
this interface only, so a new bus (Dynamixel Protocol 2.0) is a new transport, not a new
loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable

import numpy as np

from firmware_bridge.wire.protocol import CommandEncoder, Message


class Transport(ABC):
    """The loop's link."""

    @abstractmethod
    def poll(self) -> Iterable[tuple[int, Message]]:
        """What arrived since the last call: (seq, message) pairs (STATE, FAULT, INFO). A
        transport that itself sees the robot fault (a servo's error bit) raises the
        `host.safety.SafetyFault` that ends the run."""

    @abstractmethod
    def send_command(self, state_seq: int, command: np.ndarray) -> int:
        """Send one command (physical units), acting on STATE `state_seq`; its seq."""

    @abstractmethod
    def prime(self, state_seq: int, command: np.ndarray) -> None:
        """Do the encoding work of `send_command` without sending (the loop warms the CPU
        caches with it before a deadline)."""

    @property
    @abstractmethod
    def dropped(self) -> int:
        """Frames or bus transactions lost so far (for the status line)."""


class FramedTransport(Transport):
    """Our framed protocol on a `wire.link.SerialLink`: COMMAND frames packed by the
    allocation-free `CommandEncoder`."""

    def __init__(self, link, n_actuators: int) -> None:
        self.link = link
        self.encoder = CommandEncoder(n_actuators)

    def poll(self) -> Iterable[tuple[int, Message]]:
        return self.link.poll()

    def send_command(self, state_seq: int, command: np.ndarray) -> int:
        seq = self.link.next_seq()
        self.link.send(self.encoder.encode(seq, state_seq, command))
        return seq

    def prime(self, state_seq: int, command: np.ndarray) -> None:
        self.encoder.encode(0, state_seq, command)

    @property
    def dropped(self) -> int:
        return self.link.parser_stats.dropped_total
