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
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import queue
import select
import signal
import sys
import threading
import time
import tty
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from firmware_bridge.tools.faultproxy_config import FaultProxyConfig
from firmware_bridge.wire.protocol import FrameError, MsgType, State, Status, decode_frame
from ppo_robot.cli import UserError, run_app, write_summary

log = logging.getLogger("faultproxy")

DIRECTIONS = ("h2c", "c2h")
"""host -> controller, controller -> host."""
FRAME_FAULTS = ("drop", "corrupt", "duplicate", "delay", "reorder")
"""Per-frame faults, mutually exclusive: one draw decides which (if any) hits a frame."""
KINDS = (*FRAME_FAULTS, "garbage", "stall", "bit_error", "close")
_MAX_PARTIAL = 1024
"""Bytes without a delimiter held back at most; beyond that they go through as they are."""
_MAX_OUT = 1 << 20
"""Bytes waiting for a reader at most (nobody on the host side); the oldest are dropped."""
_REORDER_WAIT_S = 0.05
"""A frame held for reordering goes out alone when no next frame comes within this."""
_RECONNECT_EVERY_S = 0.02
_PROBE_EVERY_S = 0.01
"""How often the proxy looks whether a host opened its side."""
_MAX_RECORDS = 100_000
_MAX_CORRUPTED_SEQS = 10_000  # in the one-line summary: 33 min of 1 % corruption at 500 Hz


@dataclass(frozen=True)
class Rates:
    """The faults of one direction."""

    drop: float = 0.0
    corrupt: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.0
    reorder: float = 0.0
    garbage: float = 0.0
    stall: float = 0.0
    bit_error: float = 0.0
    delay_ms: float = 20.0
    stall_ms: float = 200.0
    garbage_bytes: int = 32
    stall_at_s: tuple[float, ...] = ()

    def check(self, where: str) -> None:
        for k in (*FRAME_FAULTS, "garbage", "stall", "bit_error"):
            p = getattr(self, k)
            if not 0.0 <= p <= 1.0:
                raise UserError(f"{where}{k} must be a probability in [0, 1], got {p}")
        total = sum(getattr(self, k) for k in FRAME_FAULTS)
        if total > 1.0:
            raise UserError(
                f"{where}drop + corrupt + duplicate + delay + reorder must be <= 1, got {total:g}"
            )
        if self.delay_ms < 0 or self.stall_ms < 0:
            raise UserError(f"{where}delay_ms and stall_ms must be >= 0")
        if not 1 <= self.garbage_bytes <= 4096:
            raise UserError(f"{where}garbage_bytes must be in 1..4096, got {self.garbage_bytes}")


@dataclass(frozen=True)
class ProxySettings:
    """Everything but the ports, resolved per direction (from FaultProxyConfig or by hand)."""

    h2c: Rates = field(default_factory=Rates)
    c2h: Rates = field(default_factory=Rates)
    seed: int = 0
    frames: tuple[str, ...] = ()
    start_after_s: float = 0.0
    close_at_s: float | None = None
    close_on: tuple[str, ...] = ()
    """Close the host's line when the host sends a frame of one of these message types."""
    reconnect: bool = True


def _message_types(key: str, values: Any) -> tuple[str, ...]:
    """Message type names (any case) -> upper-case names; UserError naming the key."""
    names = tuple(str(x).upper() for x in values)
    for n in names:
        if n not in MsgType.__members__:
            raise UserError(
                f"{key}: unknown message type '{n}' (one of {', '.join(MsgType.__members__)})"
            )
    return names


def settings_from_config(cfg: Any) -> ProxySettings:
    """FaultProxyConfig (a composed Hydra config) -> ProxySettings; UserError naming the key."""

    def rates(over: Any) -> Rates:
        values = {}
        for f in fields(Rates):
            v = over.get(f.name) if over is not None else None
            v = cfg[f.name] if v is None else v
            values[f.name] = tuple(float(x) for x in v) if f.name == "stall_at_s" else v
        return Rates(**values)

    rates(None).check("")
    per = {d: rates(cfg[d]) for d in DIRECTIONS}
    for d in DIRECTIONS:
        per[d].check(f"{d}.")
    names = _message_types("frames", cfg.frames)
    close_on = _message_types("close_on", cfg.close_on)
    if cfg.start_after_s < 0:
        raise UserError(f"start_after_s must be >= 0, got {cfg.start_after_s}")
    if cfg.close_at_s is not None and cfg.close_at_s < 0:
        raise UserError(f"close_at_s must be >= 0, got {cfg.close_at_s}")
    if cfg.duration_s is not None and cfg.duration_s <= 0:
        raise UserError(f"duration_s must be > 0, got {cfg.duration_s}")
    return ProxySettings(
        h2c=per["h2c"],
        c2h=per["c2h"],
        seed=int(cfg.seed),
        frames=names,
        start_after_s=float(cfg.start_after_s),
        close_at_s=None if cfg.close_at_s is None else float(cfg.close_at_s),
        close_on=close_on,
        reconnect=bool(cfg.reconnect),
    )


@dataclass
class Injected:
    """One fault the proxy injected (kept for tests; the summary has the counts)."""

    t: float
    """Seconds after the host's first byte."""
    direction: str
    kind: str
    msg_type: str | None = None
    """The frame's message type, where the fault hit one whole intact frame."""
    seq: int | None = None


class _Pipe:
    """One direction: frames in, faults, a release schedule, bytes out."""

    def __init__(self, name: str, rates: Rates, rng: np.random.Generator, owner: FaultProxy):
        self.name, self.rates, self.rng, self.owner = name, rates, rng, owner
        self.partial = bytearray()
        self.heap: list[tuple[float, int, bytes, str | None, int | None]] = []
        self.order = 0
        self.stalled_until = 0.0
        self.held: tuple[bytes, str | None, int | None] | None = None
        self.held_since = 0.0
        self.out = bytearray()
        self.counts = dict.fromkeys(KINDS, 0)
        self.frames = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.overflow_bytes = 0
        self.discarded_bytes = 0
        self.stall_times = sorted(rates.stall_at_s)
        self.types: Counter[str] = Counter()
        """Intact frames received from the sender, by message type."""

    # ---------------------------------------------------------------- in

    def feed(self, data: bytes, now: float, deliver: bool = True) -> None:
        """Bytes from the sender. deliver=False: nobody listens on the other side; the frames
        are only tapped (no fault is injected into a line that nobody reads)."""
        self.bytes_in += len(data)
        buf = self.partial + data
        pieces = buf.split(b"\x00")
        tail = pieces.pop()
        for p in pieces:
            if deliver:
                self._frame(bytes(p) + b"\x00", now)
            else:
                self._tap_only(bytes(p), now)
        if len(tail) > _MAX_PARTIAL:  # no delimiter for this long: pass it on as it is
            self._emit(bytes(tail), now, None, None)
            tail = bytearray()
        self.partial = bytearray(tail)

    def _tap_only(self, piece: bytes, now: float) -> None:
        self.discarded_bytes += len(piece) + 1
        if piece:
            try:
                seq, msg = decode_frame(piece)
            except FrameError:
                return
            self.owner._tap(self.name, now, seq, msg)

    def _record(self, now: float, kind: str, mtype: str | None, seq: int | None) -> None:
        self.counts[kind] += 1
        self.owner._record(Injected(self.owner.t(now), self.name, kind, mtype, seq))

    def _frame(self, frame: bytes, now: float) -> None:
        self.frames += 1
        mtype = seq = None
        msg = None
        if len(frame) > 1:
            try:
                seq, msg = decode_frame(frame[:-1])
                mtype = msg.TYPE.name
            except FrameError:
                pass
        if mtype is not None:
            self.types[mtype] += 1
        self.owner._tap(self.name, now, seq, msg)
        if self.name == "h2c" and mtype in self.owner.settings.close_on:
            self.owner._close_host(now)  # the frame is lost with the line
            return
        r = self.rates
        if not self.owner.active(now) or (
            self.owner.settings.frames and mtype not in self.owner.settings.frames
        ):
            self._emit(frame, now, mtype, seq)
            return
        rng = self.rng
        if r.garbage and rng.random() < r.garbage:
            n = int(rng.integers(1, r.garbage_bytes + 1))
            self._emit(rng.integers(1, 256, n, dtype=np.uint8).tobytes() + b"\x00", now, None, None)
            self._record(now, "garbage", None, None)
        if r.stall and rng.random() < r.stall:
            self.start_stall(now, r.stall_ms / 1e3)
        u = rng.random()
        for kind in FRAME_FAULTS:
            p = getattr(r, kind)
            if u >= p:
                u -= p
                continue
            if kind == "drop":
                self._record(now, kind, mtype, seq)
                return
            if kind == "corrupt":
                frame = self._corrupt(frame)
                self._record(now, kind, mtype, seq)
                self._emit(frame, now, None, None)
                return
            if kind == "duplicate":
                self._record(now, kind, mtype, seq)
                self._emit(frame, now, mtype, seq)
                break
            if kind == "delay":
                self._record(now, kind, mtype, seq)
                self._push(frame, max(now + r.delay_ms / 1e3, self.stalled_until), mtype, seq)
                return
            if kind == "reorder" and self.held is None:
                self._record(now, kind, mtype, seq)
                self.held, self.held_since = (frame, mtype, seq), now
                return
            break
        self._emit(frame, now, mtype, seq)

    def _corrupt(self, frame: bytes) -> bytes:
        """One byte other than the delimiter altered, never into 0x00 (one frame stays one)."""
        b = bytearray(frame)
        i = int(self.rng.integers(0, len(b) - 1)) if len(b) > 1 else 0
        mask = int(self.rng.integers(1, 256))
        while b[i] ^ mask == 0:
            mask = int(self.rng.integers(1, 256))
        b[i] ^= mask
        return bytes(b)

    def start_stall(self, now: float, seconds: float) -> None:
        self.stalled_until = max(self.stalled_until, now + seconds)
        self._record(now, "stall", None, None)
        log.info("%s: line stalls for %.0f ms", self.name, seconds * 1e3)

    # ---------------------------------------------------------------- out

    def _push(self, frame: bytes, release: float, mtype: str | None, seq: int | None) -> None:
        self.order += 1
        heapq.heappush(self.heap, (release, self.order, frame, mtype, seq))

    def _emit(self, frame: bytes, now: float, mtype: str | None, seq: int | None) -> None:
        self._push(frame, max(now, self.stalled_until), mtype, seq)
        if self.held is not None:  # the held frame goes right after this one: swapped
            held, self.held = self.held, None
            self._push(held[0], max(now, self.stalled_until), held[1], held[2])

    def tick(self, now: float) -> None:
        """Scheduled stalls, reorder timeouts; move due frames to the output buffer."""
        while (
            self.stall_times
            and self.owner.t0 is not None  # the schedule starts at the host's first byte
            and self.owner.t(now) >= self.stall_times[0]
        ):
            self.stall_times.pop(0)
            self.start_stall(now, self.rates.stall_ms / 1e3)
        if self.held is not None and now - self.held_since > _REORDER_WAIT_S:
            held, self.held = self.held, None
            self._push(held[0], max(now, self.stalled_until), held[1], held[2])
        ready = bytearray()
        while self.heap and self.heap[0][0] <= now:
            _, _, frame, mtype, _seq = heapq.heappop(self.heap)
            ready += frame
        if not ready:
            return
        p = self.rates.bit_error
        if p and self.owner.active(now):
            n = int(self.rng.binomial(len(ready), p))
            for i in self.rng.integers(0, len(ready), n):
                ready[int(i)] ^= 1 << int(self.rng.integers(0, 8))
            if n:
                self.counts["bit_error"] += n
                self.owner._record(Injected(self.owner.t(now), self.name, "bit_error", None, n))
        self.out += ready
        if len(self.out) > _MAX_OUT:
            extra = len(self.out) - _MAX_OUT
            del self.out[:extra]
            self.overflow_bytes += extra

    def next_event(self) -> float | None:
        t = self.heap[0][0] if self.heap else None
        if self.held is not None:
            h = self.held_since + _REORDER_WAIT_S
            t = h if t is None else min(t, h)
        return t

    def write_to(self, fd: int) -> None:
        if not self.out:
            return
        try:
            n = os.write(fd, self.out)
        except (BlockingIOError, InterruptedError):
            return
        self.bytes_out += n
        del self.out[:n]

    def discard(self, data: bytes) -> None:
        self.discarded_bytes += len(data)

    def summary(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "types": dict(self.types),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "injected": {k: v for k, v in self.counts.items() if v},
            "discarded_bytes": self.discarded_bytes,
            "overflow_bytes": self.overflow_bytes,
        }


@dataclass
class ControllerView:
    """What the controller reported, from the intact frames the proxy saw (proxy clock)."""

    states: int = 0
    enabled: bool | None = None
    transitions: list[tuple[float, bool]] = field(default_factory=list)
    """(time, enabled) whenever STATE.status ENABLED changed."""
    faults: list[tuple[float, int, str]] = field(default_factory=list)
    """(time, code, text) of every FAULT message."""
    last_state: State | None = None
    clock_offset: float | None = None
    """min over STATEs of (proxy time - controller t_us): proxy clock = controller clock +
    this (to within the shortest transit time)."""

    def controller_time(self, t: float) -> float | None:
        """A proxy-clock time on the controller's clock (seconds since its boot)."""
        return None if self.clock_offset is None else t - self.clock_offset


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
            d: _Pipe(d, getattr(self.settings, d), np.random.default_rng(s), self)
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

    def _close_host(self, now: float) -> None:
        if self._master is None:
            return
        self.closed_at = now
        self.pipes["h2c"].counts["close"] += 1
        self._record(Injected(self.t(now), "h2c", "close"))
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
        return self.t0 is not None and now - self.t0 >= self.settings.start_after_s

    def _record(self, rec: Injected) -> None:
        if len(self.records) < _MAX_RECORDS:
            self.records.append(rec)

    def _tap(self, direction: str, now: float, seq: int | None, msg: Any) -> None:
        if direction != "c2h" or msg is None:
            return
        c = self.controller
        if isinstance(msg, State):
            c.states += 1
            c.last_state = msg
            off = now - msg.t_us / 1e6
            c.clock_offset = off if c.clock_offset is None else min(c.clock_offset, off)
            en = bool(Status(msg.status) & Status.ENABLED)
            if en != c.enabled:
                c.transitions.append((now, en))
                c.enabled = en
        elif msg.TYPE == MsgType.FAULT:
            c.faults.append((now, int(msg.code), msg.text))

    def disarmed_after(self, t: float) -> float | None:
        """Proxy-clock time of the first STATE at or after t that shows the actuators
        disarmed (after having been armed), None if none came."""
        for when, en in self.controller.transitions:
            if when >= t and not en:
                return when
        return None

    # ---------------------------------------------------------------- on demand (any thread)

    def stall(self, direction: str, seconds: float) -> None:
        """Stall one direction ('h2c', 'c2h') or both ('both') for this long, from now."""
        dirs = DIRECTIONS if direction == "both" else (direction,)
        self._requests.put(lambda now: [self.pipes[d].start_stall(now, seconds) for d in dirs])

    def close_line(self) -> None:
        """Close the host's line now (as a pulled cable)."""
        self._requests.put(self._close_host)

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
        now = self.clock()
        while not self._requests.empty():
            self._requests.get()(now)
        if self._master is not None and (
            (self.host_present and self._master in r)
            or (not self.host_present and now >= self._next_probe)
        ):
            data = self._host_read(now)
            if data:
                if self.t0 is None:
                    self.t0 = now
                if self._up_fd is None:
                    h2c.discard(data)
                else:
                    h2c.feed(data, now)
        if self._up_fd is not None and self._up_fd in r:
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
                c2h.feed(data, now, deliver=self.host_present)
        if self._up_fd is None and self.settings.reconnect:
            self._try_reconnect(now)
        s = self.settings
        if (
            s.close_at_s is not None
            and self._master is not None
            and self.t0 is not None
            and now - self.t0 >= s.close_at_s
        ):
            self._close_host(now)
        h2c.tick(now)
        c2h.tick(now)
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


def proxy_main(cfg: Any) -> dict[str, Any]:
    from firmware_bridge.wire.link import LinkError

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="faultproxy: %(message)s")
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
