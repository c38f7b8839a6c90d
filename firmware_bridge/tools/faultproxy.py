"""`python -m firmware_bridge.faultproxy upstream=PORT [corrupt=0.01] [c2h.drop=0.05] ...`

A faulty cable between the host (`firmware_bridge.deploy`) and the controller, for testing
what a bad link does to a run. Opens the controller's port as a client (`upstream=`: a
device, a pseudo-terminal or a symlink to one, e.g. sim_robot's `port_link`), creates its
own pseudo-terminal for the host, prints `PORT <path>` as its first stdout line (and places
a symlink to it with `port_link=`), then forwards bytes both ways and, seeded, injects:

- per frame (frames split on 0x00), at a probability each: `drop`, `corrupt` (one byte
  altered, never into 0x00, so each corrupt frame costs the receiver exactly one dropped
  frame), `duplicate`, `delay` (held `delay_ms`; later frames overtake it), `reorder`
  (swapped with the next frame), `garbage` (a frame of random bytes inserted before it),
  `stall` (the line holds everything for `stall_ms`, then delivers it);
- per byte: `bit_error` (one bit flipped, delimiters included: real line noise);
- on a schedule, in seconds after the host's first byte: `stall_at_s=[...]`, and
  `close_at_s` (the host's line closes, as when a cable is pulled);
- on a message: `close_on=[DISABLE]` closes the host's line the moment the host sends a
  frame of one of these types (the frame is not forwarded): a cable pulled exactly while
  that message is in flight.

Each setting applies to both directions; `h2c.<key>` (host -> controller) and `c2h.<key>`
(controller -> host) override one. `frames=[STATE,COMMAND]` limits the per-frame faults to
those message types, `start_after_s` holds every fault back for a while. When the upstream
port goes away (a controller that restarts) the proxy reopens it (`reconnect`).

The proxy decodes every frame it forwards before injecting anything (a tap on the intact
stream), so it knows what the controller really reported: when it disarmed and which
faults it raised. Ends (SIGTERM, SIGINT, `duration_s`) with one JSON line: frames and
bytes forwarded and faults injected, per kind and direction.

In process (tests, benchmarks): `FaultProxy(upstream, ProxySettings(...))` opens the ports,
`.start()` runs it on a thread, `.stall(...)`, `.close_line()` and `.rates(...)` inject
faults on demand, `.records` lists each injected fault, `.controller` is the tap (what the
controller reported, on the proxy's clock and mapped to the controller's), `.stop()` ends it
and returns the summary.

This module holds the proxy (ports, loop, faults on demand, summary) and the entry point;
each direction is a `faultproxy_pipe.Pipe`, the settings are `faultproxy_settings`, the
tap is `faultproxy_tap.ControllerView`, the schema `faultproxy_config`. Tools floor.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import signal
import sys
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from firmware_bridge.tools.faultproxy_config import FaultProxyConfig
from firmware_bridge.tools.faultproxy_pipe import Injected, Pipe
from firmware_bridge.tools.faultproxy_settings import (
    DIRECTIONS,
    ProxySettings,
    Rates,
    settings_from_config,
)
from firmware_bridge.tools.faultproxy_tap import ControllerView
from ppo_robot.cli import UserError, run_app, typed_config, write_summary

__all__ = [
    "ControllerView",
    "FaultProxy",
    "Injected",
    "ProxySettings",
    "Rates",
    "main",
    "proxy_main",
    "settings_from_config",
]

log = logging.getLogger("faultproxy")

_RECONNECT_EVERY_S = 0.02
_PROBE_EVERY_S = 0.01
"""How often the proxy looks whether a host opened its side."""
_MAX_RECORDS = 100_000
_MAX_CORRUPTED_SEQS = 10_000  # in the one-line summary: 33 min of 1 % corruption at 500 Hz


class FaultProxy:
    """The proxy: host-side pseudo-terminal, upstream client port, two pipes, one loop."""

    def __init__(
        self,
        upstream: str,
        settings: ProxySettings | None = None,
        *,
        port_link: str | None = None,
        baud: int = 1_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or ProxySettings()
        self.upstream_path, self.baud, self.clock = upstream, baud, clock
        seeds = np.random.SeedSequence(self.settings.seed).spawn(2)
        self.pipes = {
            d: Pipe(d, getattr(self.settings, d), np.random.default_rng(s), self)
            for d, s in zip(DIRECTIONS, seeds, strict=True)
        }
        self.records: list[Injected] = []
        self.controller = ControllerView()
        self.t0: float | None = None
        self.closed_at: float | None = None
        self.upstream_lost = 0
        self.upstream_reconnects = 0
        self._up = None
        self._up_fd: int | None = None
        self._next_reconnect = 0.0
        self._open_upstream()  # LinkError if it cannot be opened: nothing else is created
        # Only the master end stays open here: reads on it fail with EIO while no program
        # has the host side open, which is how the proxy knows whether a host listens.
        self._master, slave = os.openpty()
        tty.setraw(slave)
        self.port = os.ttyname(slave)
        os.close(slave)
        os.set_blocking(self._master, False)
        self.host_present = False
        self.host_sessions = 0
        self._next_probe = 0.0
        self.link = Path(port_link) if port_link else None
        if self.link is not None:
            if self.link.is_symlink() or self.link.exists():
                self.link.unlink()
            self.link.symlink_to(self.port)
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = self.clock()

    # ---------------------------------------------------------------- ports

    def _open_upstream(self) -> None:
        from firmware_bridge.wire.link import open_serial

        self._up = open_serial(self.upstream_path, self.baud, exclusive=True)
        self._up_fd = self._up.fileno()
        os.set_blocking(self._up_fd, False)

    def _lose_upstream(self, now: float, why: str) -> None:
        log.warning("upstream %s lost (%s)", self.upstream_path, why)
        self.upstream_lost += 1
        with contextlib.suppress(Exception):  # the port is gone already
            self._up.close()
        self._up, self._up_fd = None, None
        self._next_reconnect = now + _RECONNECT_EVERY_S

    def _try_reconnect(self, now: float) -> None:
        from firmware_bridge.wire.link import LinkError

        if now < self._next_reconnect:
            return
        try:
            self._open_upstream()
        except LinkError:
            self._next_reconnect = now + _RECONNECT_EVERY_S
            return
        self.upstream_reconnects += 1
        log.info("upstream %s reopened", self.upstream_path)

    def close_host(self, now: float) -> None:
        """Close the host's line now, on the loop's thread (close_on, close_at_s, close_line)."""
        if self._master is None:
            return
        self.closed_at = now
        self.pipes["h2c"].counts["close"] += 1
        self.record(Injected(self.t(now), "h2c", "close"))
        log.info("host line closed at t=%.3f s", self.t(now))
        os.close(self._master)
        self._master = None
        self.host_present = False
        if self.link is not None and self.link.is_symlink():
            self.link.unlink()

    def _host_read(self, now: float) -> bytes:
        """Read what the host sent; notice it opening and closing its side."""
        try:
            data = os.read(self._master, 65536)
        except (BlockingIOError, InterruptedError):
            data = b""
        except OSError:  # EIO: no program has the host side open
            if self.host_present:
                log.info("host closed %s at t=%.3f s", self.port, self.t(now))
            self.host_present = False
            self._next_probe = now + _PROBE_EVERY_S
            return b""
        if not self.host_present:
            self.host_present = True
            self.host_sessions += 1
        return data

    # ---------------------------------------------------------------- bookkeeping

    def t(self, now: float) -> float:
        """Seconds after the host's first byte (before it: after the proxy started)."""
        return now - (self.t0 if self.t0 is not None else self.started)

    def active(self, now: float) -> bool:
        """Whether faults are injected now: the host has sent, and start_after_s has passed."""
        return self.t0 is not None and now - self.t0 >= self.settings.start_after_s

    def record(self, rec: Injected) -> None:
        """Keep one injected fault (the first _MAX_RECORDS; the counts go on)."""
        if len(self.records) < _MAX_RECORDS:
            self.records.append(rec)

    def tap(self, direction: str, now: float, seq: int | None, msg: Any) -> None:
        """An intact frame a pipe received (msg None: not decodable); the controller's go to
        the view of what it reported."""
        if direction == "c2h" and msg is not None:
            self.controller.see(now, msg)

    def disarmed_after(self, t: float) -> float | None:
        """Proxy-clock time of the first STATE at or after t that shows the actuators
        disarmed (after having been armed), None if none came."""
        return self.controller.disarmed_after(t)

    # ---------------------------------------------------------------- on demand (any thread)

    def stall(self, direction: str, seconds: float) -> None:
        """Stall one direction ('h2c', 'c2h') or both ('both') for this long, from now."""
        dirs = DIRECTIONS if direction == "both" else (direction,)
        self._requests.put(lambda now: [self.pipes[d].start_stall(now, seconds) for d in dirs])

    def close_line(self) -> None:
        """Close the host's line now (as a pulled cable)."""
        self._requests.put(self.close_host)

    def rates(self, direction: str, **changes: float) -> None:
        """Change fault settings of one direction (or 'both') from now on."""
        dirs = DIRECTIONS if direction == "both" else (direction,)

        def apply(now: float) -> None:
            for d in dirs:
                self.pipes[d].rates = replace(self.pipes[d].rates, **changes)

        self._requests.put(apply)

    # ---------------------------------------------------------------- loop

    def step(self, timeout_s: float = 0.005) -> None:
        """One pass: wait for bytes (at most timeout_s), forward, inject, write."""
        readable = self._wait(timeout_s)
        now = self.clock()
        while not self._requests.empty():
            self._requests.get()(now)
        self._read_host(now, readable)
        self._read_upstream(now, readable)
        if self._up_fd is None and self.settings.reconnect:
            self._try_reconnect(now)
        s = self.settings
        if (
            s.close_at_s is not None
            and self._master is not None
            and self.t0 is not None
            and now - self.t0 >= s.close_at_s
        ):
            self.close_host(now)
        self.pipes["h2c"].tick(now)
        self.pipes["c2h"].tick(now)
        self._write(now)

    def _wait(self, timeout_s: float) -> list[int]:
        """Wait until a port can be read, one with bytes waiting can be written, or the
        pipes' next release is due (at most timeout_s); the readable ports."""
        now = self.clock()
        h2c, c2h = self.pipes["h2c"], self.pipes["c2h"]
        for p in (h2c, c2h):
            nxt = p.next_event()
            if nxt is not None:
                timeout_s = min(timeout_s, max(0.0, nxt - now))
        host = self._master if self.host_present else None
        rl = [fd for fd in (host, self._up_fd) if fd is not None]
        wl = []
        if h2c.out and self._up_fd is not None:
            wl.append(self._up_fd)
        if c2h.out and host is not None:
            wl.append(host)
        try:
            r, _, _ = select.select(rl, wl, [], timeout_s)
        except InterruptedError:
            r = []
        return r

    def _read_host(self, now: float, readable: list[int]) -> None:
        """The host's bytes into h2c (discarded while upstream is gone); probe for a host
        opening its side while none has it open."""
        if self._master is None or not (
            (self.host_present and self._master in readable)
            or (not self.host_present and now >= self._next_probe)
        ):
            return
        data = self._host_read(now)
        if data:
            if self.t0 is None:
                self.t0 = now
            if self._up_fd is None:
                self.pipes["h2c"].discard(data)
            else:
                self.pipes["h2c"].feed(data, now)

    def _read_upstream(self, now: float, readable: list[int]) -> None:
        """The controller's bytes into c2h; an end of file or a read error loses upstream."""
        if self._up_fd is None or self._up_fd not in readable:
            return
        try:
            data = os.read(self._up_fd, 65536)
            if not data:
                self._lose_upstream(now, "end of file")
        except (BlockingIOError, InterruptedError):
            data = b""
        except OSError as e:
            data = b""
            self._lose_upstream(now, e.strerror or str(e))
        if data:  # tapped either way: what the controller does matters
            self.pipes["c2h"].feed(data, now, deliver=self.host_present)

    def _write(self, now: float) -> None:
        """Due bytes out to both ports; a side nobody reads drops (and counts) its bytes."""
        h2c, c2h = self.pipes["h2c"], self.pipes["c2h"]
        if self._up_fd is not None:
            try:
                h2c.write_to(self._up_fd)
            except OSError as e:
                self._lose_upstream(now, e.strerror or str(e))
        else:
            h2c.discard(bytes(h2c.out))
            h2c.out.clear()
        if self.host_present:
            try:
                c2h.write_to(self._master)
            except OSError:
                self.host_present = False
        if not self.host_present:  # a line nobody listens to keeps nothing
            c2h.discard(bytes(c2h.out))
            c2h.out.clear()

    def run(self, duration_s: float | None = None) -> None:
        """Forward until stop() (or duration_s)."""
        end = None if duration_s is None else self.clock() + duration_s
        while not self._stop.is_set() and (end is None or self.clock() < end):
            self.step()

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self.run, name="faultproxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        """Stop the loop, close both ports; the summary."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.close()
        return self.summary()

    def close(self) -> None:
        if self._master is not None:
            os.close(self._master)
            self._master = None
        if self._up is not None:
            self._up.close()
            self._up, self._up_fd = None, None
        if self.link is not None and self.link.is_symlink():
            self.link.unlink()

    def summary(self) -> dict[str, Any]:
        pipes = {d: p.summary() for d, p in self.pipes.items()}
        c = self.controller
        return {
            "port": self.port,
            "upstream": self.upstream_path,
            "seed": self.settings.seed,
            "wall_s": round(self.clock() - self.started, 3),
            "frames": {d: pipes[d]["frames"] for d in DIRECTIONS},
            "frame_types": {d: pipes[d]["types"] for d in DIRECTIONS},
            "bytes": {d: pipes[d]["bytes_out"] for d in DIRECTIONS},
            "injected": {d: pipes[d]["injected"] for d in DIRECTIONS},
            "injected_total": sum(sum(pipes[d]["injected"].values()) for d in DIRECTIONS),
            # seqs of the corrupted frames (read before the corruption): tells a corruption
            # the receiver read from one in flight when it closed
            "corrupted_seqs": {
                d: [r.seq for r in self.records if r.kind == "corrupt" and r.direction == d][
                    :_MAX_CORRUPTED_SEQS
                ]
                for d in DIRECTIONS
            },
            "discarded_bytes": {d: pipes[d]["discarded_bytes"] for d in DIRECTIONS},
            "overflow_bytes": {d: pipes[d]["overflow_bytes"] for d in DIRECTIONS},
            "closed_at_s": None if self.closed_at is None else round(self.t(self.closed_at), 3),
            "host_sessions": self.host_sessions,
            "upstream_lost": self.upstream_lost,
            "upstream_reconnects": self.upstream_reconnects,
            "controller_states": c.states,
            "controller_faults": [code for _, code, _ in c.faults],
            "controller_rx_errors": c.last_state.rx_errors if c.last_state else None,
        }


def proxy_main(raw: Any) -> dict[str, Any]:
    from firmware_bridge.wire.link import LinkError

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="faultproxy: %(message)s")
    cfg: FaultProxyConfig = typed_config(raw, FaultProxyConfig)
    settings = settings_from_config(cfg)
    try:
        proxy = FaultProxy(str(cfg.upstream), settings, port_link=cfg.port_link, baud=int(cfg.baud))
    except LinkError as e:
        raise UserError(f"upstream: {e}") from None
    stop = proxy._stop

    def _stop(signum, frame) -> None:  # noqa: ARG001
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"PORT {proxy.port}", flush=True)
    log.info("forwarding %s <-> %s", proxy.port, proxy.upstream_path)
    try:
        proxy.run(cfg.duration_s)
    finally:
        proxy.close()
    summary = proxy.summary()
    write_summary(summary, None)
    return summary


def main() -> None:
    run_app("faultproxy", proxy_main, FaultProxyConfig)
