"""One direction of the fault proxy: frames in (split on 0x00, tapped intact), faults
injected at the direction's `Rates`, a release schedule (delays, stalls, reorders), bytes out.
The owner (`faultproxy.FaultProxy`) holds the clock, the records and the host's line.
Tools floor.
"""

from __future__ import annotations

import heapq
import logging
import os
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from firmware_bridge.tools.faultproxy_settings import FRAME_FAULTS, KINDS, ProxySettings, Rates
from firmware_bridge.wire.protocol import FrameError, decode_frame

log = logging.getLogger("faultproxy")

_MAX_PARTIAL = 1024
"""Bytes without a delimiter held back at most; beyond that they go through as they are."""
_MAX_OUT = 1 << 20
"""Bytes waiting for a reader at most (nobody on the host side); the oldest are dropped."""
_REORDER_WAIT_S = 0.05
"""A frame held for reordering goes out alone when no next frame comes within this."""


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


class PipeOwner(Protocol):
    """What a pipe needs from the proxy that runs it (all on the proxy's loop thread)."""

    settings: ProxySettings
    t0: float | None
    """Proxy-clock time of the host's first byte; None before it."""

    def t(self, now: float) -> float: ...
    def active(self, now: float) -> bool: ...
    def record(self, rec: Injected) -> None: ...
    def tap(self, direction: str, now: float, seq: int | None, msg: Any) -> None: ...
    def close_host(self, now: float) -> None: ...


class Pipe:
    """One direction: frames in, faults, a release schedule, bytes out."""

    def __init__(self, name: str, rates: Rates, rng: np.random.Generator, owner: PipeOwner):
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
            self.owner.tap(self.name, now, seq, msg)

    def _record(self, now: float, kind: str, mtype: str | None, seq: int | None) -> None:
        self.counts[kind] += 1
        self.owner.record(Injected(self.owner.t(now), self.name, kind, mtype, seq))

    def _frame(self, frame: bytes, now: float) -> None:
        """One whole frame (delimiter included) from the sender: tap it, then inject."""
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
        self.owner.tap(self.name, now, seq, msg)
        if self.name == "h2c" and mtype in self.owner.settings.close_on:
            self.owner.close_host(now)  # the frame is lost with the line
            return
        if not self.owner.active(now) or (
            self.owner.settings.frames and mtype not in self.owner.settings.frames
        ):
            self._emit(frame, now, mtype, seq)
            return
        self._inject(frame, now, mtype, seq)

    def _inject(self, frame: bytes, now: float, mtype: str | None, seq: int | None) -> None:
        """The faults for one frame: garbage before it, a stall, then one draw for at most
        one of FRAME_FAULTS (the draws in this order: the seeded runs depend on it)."""
        r, rng = self.rates, self.rng
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
                self.owner.record(Injected(self.owner.t(now), self.name, "bit_error", None, n))
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
