"""The stand-in's serial port: a pseudo-terminal it owns (or a real port opened by URL),
its optional symlink and applied-command log, and the signal-driven run that closes them.
Shared by the framed-protocol controller (`sim.robot`) and the servo bus (`sim.bus_robot`).

Sim floor: imports wire.link and ppo_robot.cli.
"""

from __future__ import annotations

import os
import signal
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ppo_robot.cli import UserError

DEFAULT_BAUD = 1_000_000
"""The rate a real port (`port=`) is opened at when the robot names none."""


class Port:
    """A pseudo-terminal we own (master side), or a serial port opened by URL at baud."""

    def __init__(self, port: str | None, baud: int = DEFAULT_BAUD) -> None:
        self.serial = None
        if port is None:
            self.fd, self._slave = os.openpty()
            tty.setraw(self._slave)
            os.set_blocking(self.fd, False)
            self.path = os.ttyname(self._slave)
        else:
            from firmware_bridge.wire.link import LinkError, open_serial

            try:
                self.serial = open_serial(port, baud)
            except LinkError as e:
                raise UserError(str(e)) from None
            self.fd = self.serial.fileno()
            self.path = port
        self.tx_dropped = 0

    def read(self) -> bytes:
        try:
            return os.read(self.fd, 65536)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError:  # EIO: no process has the slave open
            return b""

    def write(self, data: bytes) -> None:
        try:
            n = os.write(self.fd, data)
            if n < len(data):
                self.tx_dropped += 1
        except (BlockingIOError, OSError):
            self.tx_dropped += 1

    def close(self) -> None:
        if self.serial is not None:
            self.serial.close()
        else:
            os.close(self.fd)
            os.close(self._slave)


def open_io(cfg: Any, baud: int = DEFAULT_BAUD) -> tuple[BinaryIO | None, Port, Path | None]:
    """The applied-command log (or None), the port, and its symlink (or None)."""
    try:
        applied = open(cfg.applied_log, "wb") if cfg.applied_log else None  # noqa: SIM115
    except OSError as e:
        raise UserError(f"applied_log {cfg.applied_log} cannot be written ({e.strerror})") from None
    port = Port(cfg.port, baud)
    link = Path(cfg.port_link) if cfg.port_link else None
    if link is not None:
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(port.path)
    return applied, port, link


def log_applied(applied: BinaryIO, seq: int, values: np.ndarray) -> None:
    """One applied command in the applied log: u32 seq + float32 values, little-endian."""
    applied.write(seq.to_bytes(4, "little") + np.asarray(values).astype("<f4").tobytes())


def run_until_stopped(
    loop: Any,
    io: tuple[BinaryIO | None, Port, Path | None],
    on_stop: Callable[[], None] | None = None,
) -> None:
    """Run `loop.run()` until it returns or SIGTERM/SIGINT sets `loop.stop`; then `on_stop`
    (the stand-in's safe state), and close the port, the log and the link whatever happened."""
    applied, port, link = io

    def _stop(signum, frame) -> None:  # noqa: ARG001
        loop.stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        loop.run()
    finally:
        if on_stop is not None:
            on_stop()
        port.close()
        if applied is not None:
            applied.close()
        if link is not None and link.is_symlink():
            link.unlink()
