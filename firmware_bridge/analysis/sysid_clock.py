"""The clock mapping of a rollout log: when each logged COMMAND reached the controller.

Analysis floor (used by `sysid_trace`). The host logs when it sent each COMMAND on its own
clock; the controller stamps each STATE on its clock and reports the last COMMAND it
applied. The host/controller offset is bracketed from both sides: a STATE cannot be used
before it was sent (upper bound) and a COMMAND cannot be applied before it was sent (lower
bound, from the first STATE that acknowledges it). The midpoint is used, with a linear drift
fitted over the run for controllers with their own crystal. A bracket wider than two physics
steps is narrowed by a 1-D search of the replay error over it (`sysid_windows.refine_offset`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from firmware_bridge.logs.rollout_log import controller_seconds

NO_COMMAND = 0xFFFFFFFF


@dataclass
class Timing:
    """How host times map onto the controller clock: ctrl = (host - offset) / (1 + drift)."""

    offset_s: float
    drift: float = 0.0
    window_s: float | None = None
    """Width of the offset bracket (the timing uncertainty); None where the log states it."""
    transit_s: float = 0.0
    """Known time from the host's send to the controller latching a COMMAND (sim logs)."""
    method: str = "bracket"

    def to_ctrl(self, host_s: np.ndarray) -> np.ndarray:
        return (np.asarray(host_s) - self.offset_s) / (1.0 + self.drift) + self.transit_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "offset_s": round(self.offset_s, 7),
            "drift_ppm": round(self.drift * 1e6, 3),
            "window_ms": None if self.window_s is None else round(self.window_s * 1e3, 3),
            "transit_ms": round(self.transit_s * 1e3, 3),
            "method": self.method,
        }


def command_clock(
    meta: dict[str, Any], states: list[dict], cmds: list[dict], timing: list[dict]
) -> tuple[Timing, np.ndarray]:
    """The run's Timing (the log's own where it states one, else estimated from the STATEs'
    acknowledgements) and the (K,) host times the COMMANDs left."""
    tm = _log_timing(meta)
    if tm is None:
        tm = estimate_timing(states, cmds, timing)
    return tm, _send_times(cmds, timing)


def _log_timing(meta: dict[str, Any]) -> Timing | None:
    """Timing stated by the log itself (simulated logs know their clocks exactly)."""
    tm = meta.get("timing")
    if not isinstance(tm, dict) or "clock_offset_s" not in tm:
        return None
    return Timing(
        offset_s=float(tm["clock_offset_s"]),
        transit_s=float(tm.get("command_transit_s", 0.0)),
        method="log",
    )


def _send_times(cmds: list[dict], timing: list[dict]) -> np.ndarray:
    """Host time each COMMAND left (tick start + compute time; the tick start if unknown)."""
    host = np.array([c["t_host"] for c in cmds], dtype=np.float64)
    if not timing:
        return host
    compute = {int(r["tick"]): float(r.get("compute_us", 0.0)) for r in timing if "tick" in r}
    extra = np.array([compute.get(int(c.get("tick", -1)), 0.0) for c in cmds]) / 1e6
    return host + np.where(np.isfinite(extra), extra, 0.0)


def estimate_timing(states: list[dict], cmds: list[dict], timing: list[dict]) -> Timing:
    """Bracket the host/controller clock offset (module docstring), with linear drift."""
    th = np.array([s["t_host"] for s in states], dtype=np.float64)
    tu = controller_seconds([s["t_us"] for s in states])[0]
    upper = th - tu  # offset <= this (a STATE is used after it was sent)
    low_t, lower = _lower_bounds(states, cmds, timing, tu) if cmds else ([], [])
    if not lower:
        off = float(np.min(upper))
        return Timing(off, 0.0, None, 0.0, "state timestamps only (upper bound)")
    return _midline(tu, upper, np.array(low_t), np.array(lower))


def _lower_bounds(
    states: list[dict], cmds: list[dict], timing: list[dict], tu: np.ndarray
) -> tuple[list[float], list[float]]:
    """(controller times, offsets): offset >= each (a COMMAND is applied after it was sent),
    from the first STATE that acknowledges each COMMAND."""
    seq_start = {}
    if timing:
        seq_start = {
            int(r["tick"]): float(r.get("compute_us", 0.0)) - float(r.get("send_us", 0.0))
            for r in timing
            if "tick" in r
        }
    # An acknowledgement counts only for a COMMAND sent at an earlier tick than the
    # STATE was read: a controller that kept its last_cmd_seq from an earlier session
    # (reconnect without reboot) reports seqs this session sends only later.
    sent_tick = {int(c["seq"]): int(c.get("tick", -1)) for c in cmds}
    acked = np.array(
        [
            s.get("last_cmd_seq", NO_COMMAND)
            if sent_tick.get(int(s.get("last_cmd_seq", NO_COMMAND)), 1 << 62)
            < int(s.get("tick", -1))
            else -1
            for s in states
        ],
        dtype=np.int64,
    )
    acked = np.maximum.accumulate(acked)
    low_t: list[float] = []
    lower: list[float] = []
    for c in cmds:
        j = int(np.searchsorted(acked, int(c["seq"]), side="left"))
        if j >= len(acked):
            continue
        start = c["t_host"] + max(0.0, seq_start.get(int(c.get("tick", -1)), 0.0)) / 1e6
        lower.append(start - tu[j])  # offset >= this (applied after it was sent)
        low_t.append(tu[j])
    return low_t, lower


def _midline(tu: np.ndarray, upper: np.ndarray, low_t_a: np.ndarray, lower_a: np.ndarray) -> Timing:
    """Per 2-second bin: tightest bounds; the midline through them gives offset and drift
    (over 10 s or more with 3 bins), else the middle of the whole run's bracket."""
    t_up = tu
    t0 = tu[0]
    span = tu[-1] - t0
    nb = max(1, int(span // 2.0))
    edges = t0 + np.linspace(0, span + 1e-9, nb + 1)
    mids, times, widths = [], [], []
    for b in range(nb):
        iu = (t_up >= edges[b]) & (t_up < edges[b + 1])
        il = (low_t_a >= edges[b]) & (low_t_a < edges[b + 1])
        if iu.any() and il.any():
            hi, lo = upper[iu].min(), lower_a[il].max()
            mids.append(0.5 * (hi + lo))
            widths.append(hi - lo)
            times.append(0.5 * (edges[b] + edges[b + 1]))
    if len(mids) >= 3 and span >= 10.0:
        slope, icpt = np.polyfit(np.array(times), np.array(mids), 1)
        return Timing(float(icpt), float(slope), float(np.median(widths)), 0.0, "bracket+drift")
    hi, lo = float(np.min(upper)), float(np.max(lower_a))
    return Timing(0.5 * (hi + lo), 0.0, hi - lo, 0.0, "bracket")
