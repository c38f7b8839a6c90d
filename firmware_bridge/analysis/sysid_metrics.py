"""How far a simulation is from the log: per-sensor RMSE, correlation, time to divergence.

Analysis floor (reads `sysid_simulate.Replay`); the numbers the replay report prints.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from firmware_bridge.analysis.sysid_simulate import Replay


def metrics(rp: Replay, spec, horizon_s: float, divergence_frac: float) -> dict[str, Any]:
    """Per-sensor RMSE (whole run and first `horizon_s`), correlation, time to divergence."""
    names = [s.name for s in spec.sensors]
    err = rp.sim - rp.logged
    first = rp.t <= horizon_s + 1e-9
    rng = np.ptp(rp.logged, axis=0)
    floor = np.maximum(10 * spec.resolution, 1e-6)
    thresh = np.maximum(divergence_frac * rng, floor)
    out: dict[str, Any] = {
        "rmse": {},
        "rmse_first": {},
        "correlation": {},
        "correlation_first": {},
        "time_to_divergence_s": {},
        "divergence_threshold": {},
    }
    for i, n in enumerate(names):
        e = err[:, i]
        out["rmse"][n] = _r(np.sqrt(np.mean(e**2)))
        out["rmse_first"][n] = _r(np.sqrt(np.mean(e[first] ** 2)))
        out["correlation"][n] = _corr(rp.logged[:, i], rp.sim[:, i])
        out["correlation_first"][n] = _corr(rp.logged[first, i], rp.sim[first, i])
        over = np.flatnonzero(np.abs(e) > thresh[i])
        out["time_to_divergence_s"][n] = None if over.size == 0 else _r(rp.t[over[0]], 4)
        out["divergence_threshold"][n] = _r(thresh[i])
    return out


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.size < 3 or np.std(a) < 1e-12 or np.std(b) < 1e-12:
        return None
    return _r(np.corrcoef(a, b)[0, 1], 4)


def _r(x: float, digits: int = 6) -> float:
    return float(f"{float(x):.{digits}g}")


def window_rmse(err: np.ndarray, spec) -> dict[str, float]:
    return {s.name: _r(np.sqrt(np.mean(err[:, i] ** 2))) for i, s in enumerate(spec.sensors)}
