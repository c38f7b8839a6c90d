"""System identification: fitting model parameters to rollout logs, on multiple-shooting
windows of the logged runs; and the one place the rest of the code imports it from.

Analysis floor. The steps, one module each (this module re-exports their public names):
- `sysid_clock`: when each logged COMMAND reached the controller (the clock mapping);
- `sysid_trace`: a rollout log as a `Trace` on the controller clock, and `ReplayError`;
- `sysid_simulate`: initial states from readings, the control signal from the commands,
  batched open-loop rollouts (`Simulator`) and the whole-run `replay` (its docstring states
  the sampling and command conventions);
- `sysid_windows`: multiple-shooting windows, their controls and errors, and the offset
  refinement by the dynamics;
- `sysid_metrics`: per-sensor RMSE, correlation and time to divergence;
- `sysid_params`: what can be fitted (`fit_params`) and how it is written into a model;
- here: `fit`, its `FitResult`, and `apply_fit`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import mujoco
import numpy as np

from firmware_bridge.analysis.sysid_clock import NO_COMMAND, Timing, estimate_timing
from firmware_bridge.analysis.sysid_metrics import metrics, window_rmse
from firmware_bridge.analysis.sysid_params import (
    Entry,
    FitParam,
    bind_entry,
    copy_model,
    fit_params,
    resolve_params,
    scale_entry,
)
from firmware_bridge.analysis.sysid_simulate import (
    Replay,
    Simulator,
    StateMap,
    control_grid,
    replay,
)
from firmware_bridge.analysis.sysid_trace import ENABLED, ReplayError, Trace, trace_from_log
from firmware_bridge.analysis.sysid_windows import (
    Windows,
    make_windows,
    refine_offset,
    signal_scales,
    window_controls,
    window_errors,
)

__all__ = [
    "ENABLED",
    "NO_COMMAND",
    "Entry",
    "FitParam",
    "FitResult",
    "Replay",
    "ReplayError",
    "Simulator",
    "StateMap",
    "Timing",
    "Trace",
    "Windows",
    "apply_fit",
    "control_grid",
    "estimate_timing",
    "fit",
    "fit_params",
    "make_windows",
    "metrics",
    "refine_offset",
    "replay",
    "resolve_params",
    "trace_from_log",
    "window_controls",
    "window_errors",
    "window_rmse",
]

FIT_STEP = 0.01
"""The Jacobian's difference step of a fitted multiplier's log (1 %) unless the robot sets one
(robot.yaml `fit_step`)."""
LATENCY_STEP_S = 5e-4
"""... and of a fitted latency, s (robot.yaml `fit_latency_step_s`)."""


@dataclass
class FitResult:
    params: list[str]
    values: dict[str, float]
    """Fitted multiplier per parameter (latency: seconds)."""
    nominal: dict[str, Any]
    """Nominal model values per parameter (latency: the starting value)."""
    error_before: float
    error_after: float
    """Normalized multiple-shooting RMS error (the objective) with nominal and fitted values."""
    rmse_before: dict[str, float]
    rmse_after: dict[str, float]
    """Per-sensor multiple-shooting RMSE."""
    windows: int
    window_s: float
    evaluations: int
    message: str
    entries: dict[str, tuple[Entry, ...]]
    example: dict[str, np.ndarray] = field(default_factory=dict)
    """Some windows (logged, nominal, fitted), for the report's figure."""
    shifts: list[float] = field(default_factory=list)
    """Per trace: fitted command timing, s, from the middle of its clock bracket."""
    skipped: int = 0
    """Windows left out (irregular STATE timing)."""

    @property
    def latency_s(self) -> float | None:
        return self.values.get("latency")


def fit(
    sim: Simulator,
    traces: list[Trace],
    names: list[str],
    latency_s: float,
    window_s: float,
    bound: float = 5.0,
    max_nfev: int = 60,
    step: float = FIT_STEP,
    latency_step_s: float = LATENCY_STEP_S,
    robust_scale: float | None = None,
) -> FitResult:
    """Least-squares fit of log-multipliers (and latency) on multiple-shooting windows.

    Each trace's command timing is a nuisance parameter inside its clock bracket (a log only
    brackets the host/controller offset to about one STATE period): it is fitted first with
    the nominal model, which gives the error before, and then together with the parameters.
    With `latency` among the parameters the two are one delay: arrivals are put at the
    earliest time the bracket allows and the fitted latency is the delay from there.
    `step` and `latency_step_s`: the differences of the Jacobian (a multiplier's log, the
    latency); a plant whose objective ripples on a finer scale needs larger ones.
    `robust_scale`: minimize a soft-L1 loss whose quadratic part ends at this normalized
    error, so that windows the model cannot follow (an emulator that fell behind real time,
    a knock on the arm) weigh like errors of that size (None: plain least squares).
    """
    pb = _FitProblem(sim, traces, names, latency_s, window_s, bound, (step, latency_step_s))
    pb.robust_scale = robust_scale
    timing_only = np.arange(pb.x0.size) >= pb.npar
    x_before, _ = pb.solve(pb.x0, timing_only, max_nfev)
    x_after, message = pb.solve(
        pb.latency_start(x_before), np.ones(pb.x0.size, dtype=bool), max_nfev
    )
    r0, r1 = pb.residuals_many([x_before, x_after])
    return pb.result(x_after, r0, r1, message)


class _FitProblem:
    """The fit's unknowns (log-multipliers, latency, per-trace timing shifts), their bounds
    and steps, and the batched residuals of the multiple-shooting windows."""

    def __init__(self, sim, traces, names, latency_s, window_s, bound, steps):
        self.sim, self.traces, self.latency_s, self.window_s = sim, traces, latency_s, window_s
        base = self.base = sim.model
        params = self.params = resolve_params(base, names)
        self.win = make_windows(sim, traces, window_s, regular_only=True)
        self.scale = signal_scales(traces)
        self.bounds_of = {
            p.name: [b for e in p.entries if (b := bind_entry(base, e)) is not None] for p in params
        }
        lat_i = self.lat_i = next((i for i, p in enumerate(params) if p.is_latency), None)
        widths = np.array([tr.timing.window_s or 0.0 for tr in traces])
        if lat_i is None:
            self.shift_of = [k for k, w in enumerate(widths) if w > 2 * sim.dt]
            self.fixed_shift = np.zeros(len(traces))
        else:
            self.shift_of = []
            self.fixed_shift = -widths / 2
        npar = self.npar = len(params)
        nsh = len(self.shift_of)
        shift_of = self.shift_of
        self.x0 = np.zeros(npar + nsh)
        self.lo = np.concatenate([np.full(npar, -np.log(bound)), -widths[shift_of] / 2])
        self.hi = np.concatenate([np.full(npar, np.log(bound)), widths[shift_of] / 2])
        self.step = np.concatenate([np.full(npar, steps[0]), np.full(nsh, 2e-4)])
        self.xscale = np.concatenate([np.ones(npar), np.full(nsh, 1e-3)])
        if lat_i is not None:
            self.x0[lat_i], self.lo[lat_i] = max(latency_s, 0.0), 0.0
            self.hi[lat_i] = max(0.1, 2 * latency_s)
            self.step[lat_i], self.xscale[lat_i] = steps[1], 1e-2
        self.nfev = 0
        self.robust_scale: float | None = None

    def latency_start(self, x: np.ndarray) -> np.ndarray:
        """`x` with the latency moved to the best of a grid over its bounds (every half
        physics step, then every twentieth of one around the best; batched rollouts): the
        objective is rippled on the scale of a physics step (an arrival's spread over two
        steps, encoder counts) and, where every goal saturates the servo, sharp around the
        true delay, so the gradient fit starts from the grid's best."""
        if self.lat_i is None:
            return x
        dt, i = self.sim.dt, self.lat_i
        best = x
        for grid in (
            np.arange(self.lo[i], self.hi[i] + 1e-12, dt / 2),
            np.arange(-dt / 2, dt / 2 + 1e-12, dt / 20),
        ):
            xs = [best.copy() for _ in grid]
            for xi, lat in zip(xs, grid + (0.0 if grid[0] >= 0 else best[i]), strict=True):
                xi[i] = min(max(lat, self.lo[i]), self.hi[i])
            costs = [float(np.mean(r**2)) for r in self.residuals_many(xs)]
            best = xs[int(np.argmin(costs))]
        return best

    def model_for(self, x: np.ndarray) -> mujoco.MjModel:
        m = copy_model(self.base)
        for i, p in enumerate(self.params):
            if not p.is_latency:
                for b in self.bounds_of[p.name]:
                    scale_entry(m, b, float(np.exp(x[i])))
        return m

    def lat_of(self, x: np.ndarray) -> float:
        return float(x[self.lat_i]) if self.lat_i is not None else self.latency_s

    def shifts_of(self, x: np.ndarray) -> np.ndarray:
        sh = self.fixed_shift.copy()
        sh[self.shift_of] = x[self.npar :]
        return sh

    def residuals_many(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        """Evaluate several parameter vectors in one batched rollout."""
        win, sim = self.win, self.sim
        W = win.init.shape[0]
        models, ctrls = [], []
        for x in xs:
            m = self.model_for(x)
            models.extend([m] * W)
            ctrls.append(
                window_controls(win, self.traces, self.lat_of(x), sim.dt, self.shifts_of(x))
            )
        init = np.tile(win.init, (len(xs), 1))
        out, _ = sim.run(models, init, np.concatenate(ctrls))
        self.nfev += len(xs)
        res = []
        for k in range(len(xs)):
            o = out[k * W : (k + 1) * W]
            e = (o[win.w_idx, win.s_idx] - win.logged) / self.scale
            res.append(np.nan_to_num(e, nan=1e3, posinf=1e3, neginf=-1e3).ravel())
        return res

    def solve(self, x_start: np.ndarray, free: np.ndarray, max_nfev: int) -> tuple[np.ndarray, str]:
        """Least squares over the `free` entries of x, the rest held at x_start."""
        from scipy.optimize import least_squares

        if not free.any():
            return x_start, "nothing to fit"
        cache: dict[bytes, np.ndarray] = {}
        step, hi = self.step, self.hi

        def full(z: np.ndarray) -> np.ndarray:
            x = x_start.copy()
            x[free] = z
            return x

        def fun(z: np.ndarray) -> np.ndarray:
            key = z.tobytes()
            if key not in cache:
                cache.clear()
                cache[key] = self.residuals_many([full(z)])[0]
            return cache[key]

        def jac(z: np.ndarray) -> np.ndarray:
            x = full(z)
            idx = np.flatnonzero(free)
            xs = [x]
            for i in idx:
                xi = x.copy()
                xi[i] += step[i] if x[i] + step[i] <= hi[i] else -step[i]
                xs.append(xi)
            rs = self.residuals_many(xs)
            cache.clear()
            cache[z.tobytes()] = rs[0]
            cols = [(rs[k + 1] - rs[0]) / (xs[k + 1][i] - x[i]) for k, i in enumerate(idx)]
            return np.stack(cols, axis=1)

        sol = least_squares(
            fun,
            x_start[free],
            jac=jac,
            bounds=(self.lo[free], hi[free]),
            method="trf",
            x_scale=self.xscale[free],
            max_nfev=max_nfev,
            ftol=1e-8,
            xtol=1e-8,
            gtol=1e-10,
            loss="linear" if self.robust_scale is None else "soft_l1",
            f_scale=1.0 if self.robust_scale is None else self.robust_scale,
        )
        return full(sol.x), str(sol.message)

    def result(self, x_after, r0, r1, message: str) -> FitResult:
        """The FitResult of the nominal (timing-fitted) and fitted vectors and residuals."""
        win, traces, scale = self.win, self.traces, self.scale
        n = traces[0].sensors.shape[1]
        e0 = r0.reshape(-1, n) * scale
        e1 = r1.reshape(-1, n) * scale
        values: dict[str, float] = {}
        nominal: dict[str, Any] = {}
        for i, p in enumerate(self.params):
            if p.is_latency:
                values[p.name] = float(x_after[i])
                nominal[p.name] = self.latency_s
            else:
                values[p.name] = float(np.exp(x_after[i]))
                nominal[p.name] = {
                    b.attr: b.nominal.ravel().tolist() for b in self.bounds_of[p.name]
                }
        # some windows for the figure: the first few of the first trace
        ex_idx = np.flatnonzero(win.trace_of == 0)[:6]
        example: dict[str, np.ndarray] = {}
        if ex_idx.size:
            sel = np.isin(win.w_idx, ex_idx)
            example = {
                "t": win.centers[win.w_idx[sel], win.s_idx[sel]] - traces[0].t[0],
                "logged": win.logged[sel],
                "nominal": (e0 + win.logged)[sel],
                "fitted": (e1 + win.logged)[sel],
                "window": win.w_idx[sel],
            }
        return FitResult(
            params=[p.name for p in self.params],
            values=values,
            nominal=nominal,
            error_before=float(np.sqrt(np.mean(r0**2))),
            error_after=float(np.sqrt(np.mean(r1**2))),
            rmse_before=window_rmse(e0, self.sim.spec),
            rmse_after=window_rmse(e1, self.sim.spec),
            windows=int(win.init.shape[0]),
            window_s=self.window_s,
            evaluations=self.nfev,
            message=message,
            entries={p.name: p.entries for p in self.params},
            example=example,
            shifts=self.shifts_of(x_after).tolist(),
            skipped=win.skipped,
        )


def apply_fit(model: mujoco.MjModel, res: FitResult) -> mujoco.MjModel:
    """A copy of `model` with the fitted multipliers written in."""
    m = copy_model(model)
    for name, entries in res.entries.items():
        for e in entries:
            b = bind_entry(model, e)
            if b is not None:
                scale_entry(m, b, res.values[name])
    return m
