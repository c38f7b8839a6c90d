"""Multiple shooting: the logged run cut into short windows, each simulated from its own
logged start state, so that the divergence of an unstable system over a long open-loop run
does not drown the model error. This is what the fit (`sysid.fit`) minimizes, and what
narrows a wide clock-offset bracket (`refine_offset`).

Analysis floor (on `sysid_simulate`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware_bridge.analysis.sysid_simulate import Simulator, control_grid
from firmware_bridge.analysis.sysid_trace import ReplayError, Trace


@dataclass
class Windows:
    """Multiple-shooting windows over one or more traces, laid out for batched rollouts."""

    skipped: int
    """Windows left out (irregular STATE timing)."""
    init: np.ndarray
    """(W, nstate) logged state at each window start."""
    centers: np.ndarray
    """(W, nstep) sample times of each window's steps (controller clock)."""
    trace_of: np.ndarray
    """(W,) which trace each window comes from."""
    w_idx: np.ndarray
    s_idx: np.ndarray
    """Flat (M,) window and step indices of the logged samples inside windows ..."""
    logged: np.ndarray
    """(M, n) ... and the logged values there."""
    t_in: np.ndarray
    """(M,) time since the window's start."""


def make_windows(
    sim: Simulator,
    traces: list[Trace],
    window_s: float,
    max_s: float | None = None,
    regular_only: bool = False,
) -> Windows:
    """A window from the logged STATE nearest every `window_s`, `window_s` long.

    `regular_only`: leave out windows whose STATEs are not evenly spaced at the STATE period
    (a stalled controller or lost frames: the stamps there are not to be trusted).
    """
    dt = sim.dt
    period = 1.0 / sim.spec.control_hz
    skipped = 0
    nstep = max(2, int(round(window_s / dt)) + 1)
    picked: list[tuple[int, int, np.ndarray]] = []
    for k, tr in enumerate(traces):
        for j, inside in _window_starts(tr.t, window_s, (nstep - 1) * dt, max_s):
            if regular_only and period:
                gaps = np.diff(tr.t[j : inside[-1] + 1])
                if np.any(np.abs(gaps - period) > 0.25 * period):
                    skipped += 1
                    continue
            picked.append((k, j, inside))
    if not picked and skipped:
        raise ReplayError(f"every {window_s:g} s window has irregular STATE timing")
    if not picked:
        raise ReplayError(f"the run is shorter than one {window_s:g} s window")
    return _lay_out(sim, traces, picked, nstep, skipped)


def _window_starts(t: np.ndarray, window_s: float, span_s: float, max_s: float | None):
    """(start STATE index, indices of the STATEs inside) of each window of one trace whose
    `span_s` after its start holds at least one STATE."""
    end = t[-1] if max_s is None else min(t[-1], t[0] + max_s)
    for ts in np.arange(t[0], end - 0.5 * window_s, window_s):
        j = int(np.searchsorted(t, ts))
        if j >= t.size - 1:
            return
        tj = t[j]
        inside = np.flatnonzero((t > tj) & (t <= tj + span_s + 1e-9))
        if inside.size:
            yield j, inside


def _lay_out(
    sim: Simulator,
    traces: list[Trace],
    picked: list[tuple[int, int, np.ndarray]],
    nstep: int,
    skipped: int,
) -> Windows:
    """The picked (trace, start STATE, STATEs inside) windows as flat arrays for one batch."""
    dt = sim.dt
    inits, centers, trace_of, w_idx, s_idx, logged, t_in = [], [], [], [], [], [], []
    for w, (k, j, inside) in enumerate(picked):
        tr = traces[k]
        tj = tr.t[j]
        inits.append(sim.map.states(tr.sensors[j : j + 1], np.array([tj - dt]))[0])
        centers.append(tj + dt * np.arange(nstep))
        trace_of.append(k)
        steps = np.rint((tr.t[inside] - tj) / dt).astype(int)
        w_idx.append(np.full(inside.size, w))
        s_idx.append(steps)
        logged.append(tr.sensors[inside])
        t_in.append(tr.t[inside] - tj)
    return Windows(
        skipped,
        np.array(inits),
        np.array(centers),
        np.array(trace_of),
        np.concatenate(w_idx),
        np.concatenate(s_idx),
        np.concatenate(logged),
        np.concatenate(t_in),
    )


def window_controls(
    win: Windows, traces: list[Trace], latency_s: float, dt: float, shifts: np.ndarray | None = None
) -> np.ndarray:
    """(W, nstep, nu) controls of every window; `shifts` (len(traces),) moves each trace's
    command times (the timing search)."""
    out = np.empty((*win.centers.shape, traces[0].safe.size))
    for k, tr in enumerate(traces):
        sel = win.trace_of == k
        if not sel.any():
            continue
        extra = 0.0 if shifts is None else float(shifts[k])
        out[sel] = control_grid(
            tr.arrivals(latency_s + extra),
            tr.cmd,
            tr.safe,
            tr.disarmed,
            win.centers[sel],
            dt,
            tr.held,
        )
    return out


def window_errors(sim: Simulator, win: Windows, ctrl: np.ndarray, models=None) -> np.ndarray:
    """(M, n) simulated - logged at every logged sample inside the windows."""
    out, _ = sim.run(models or sim.model, win.init, ctrl)
    return out[win.w_idx, win.s_idx] - win.logged


def refine_offset(sim: Simulator, tr: Trace, latency_s: float, window_s: float) -> None:
    """Narrow a wide clock-offset bracket by the replay error over it (in place)."""
    tm = tr.timing
    if tm.window_s is None or tm.window_s <= 2 * sim.dt:
        return
    half = tm.window_s / 2
    try:
        win = make_windows(sim, [tr], window_s, max_s=20.0, regular_only=True)
    except ReplayError:
        return  # too short or too irregular to tell: the bracket's middle stands
    cands = np.linspace(-half, half, int(np.ceil(tm.window_s / (sim.dt / 2))) + 1)
    scale = signal_scales([tr])
    W = win.init.shape[0]
    ctrl = np.concatenate(
        [window_controls(win, [tr], latency_s, sim.dt, np.array([c])) for c in cands]
    )
    out, _ = sim.run(sim.model, np.tile(win.init, (cands.size, 1)), ctrl)
    costs = [
        float(np.mean(((out[k * W : (k + 1) * W][win.w_idx, win.s_idx] - win.logged) / scale) ** 2))
        for k in range(cands.size)
    ]
    best = int(np.argmin(costs))
    # command arrivals move later by c: the offset (host - ctrl) is smaller by c
    tm.offset_s -= float(cands[best]) * (1.0 + tm.drift)
    tm.method += "+dynamics"


def signal_scales(traces: list[Trace]) -> np.ndarray:
    """Per-sensor scale for a dimensionless error: the logged signal's standard deviation."""
    allv = np.concatenate([tr.sensors for tr in traces])
    s = np.std(allv, axis=0)
    return np.where(s > 1e-9, s, 1.0)
