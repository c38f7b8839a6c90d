"""The fit section of `firmware_bridge.replay` (`fit=[...]`): model parameters fitted to
one or more logs of the same robot (`firmware_bridge.analysis.sysid.fit`, multiple
shooting in `window_s` windows), the first log replayed again on the fitted model, and
the result written as `fitted_reality.yaml` and `suggested_randomization.yaml`
(`fitted_configs`) with the error before and after.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from firmware_bridge.analysis.fitted_configs import (
    default_randomization,
    fitted_reality,
    suggested_randomization,
)
from firmware_bridge.analysis.replay_sections import Skip, report
from ppo_robot.cli import UserError


def fit_section(cfg, names, datas, paths, spec, ctx, s, figs, out) -> None:
    """Fit `names` to the logs on the first log's simulator (`ctx`); its figures into `s`
    (key `fit`) and `figs`, its configs into `out`."""
    from firmware_bridge.analysis import sysid

    traces = _traces(paths, datas, spec)
    sim = ctx["sim"]
    try:
        sysid.resolve_params(sim.model, names)
    except sysid.ReplayError as e:
        raise UserError(str(e)) from None
    res = sysid.fit(
        sim,
        traces,
        names,
        ctx["latency"],
        float(cfg.window_s),
        float(cfg.fit_bound),
        step=float(cfg.fit_step),
        latency_step_s=float(cfg.fit_latency_step_s),
        robust_scale=None if cfg.fit_robust_scale is None else float(cfg.fit_robust_scale),
    )
    fitted_model = sysid.apply_fit(sim.model, res)
    lat_after = res.latency_s if res.latency_s is not None else ctx["latency"]
    rp = sysid.replay(sim, traces[0], lat_after + res.shifts[0], model=fitted_model)
    m = sysid.metrics(rp, spec, float(cfg.rmse_horizon_s), float(cfg.divergence_frac))
    reality_path, suggested_path = _write_configs(res, sim.model, spec, paths, out)
    s["fit"] = {
        "params": res.params,
        "values": {k: round(v, 6) for k, v in res.values.items()},
        "nominal": res.nominal,
        "error_before": round(res.error_before, 6),
        "error_after": round(res.error_after, 6),
        "reduction": round(res.error_before / max(res.error_after, 1e-12), 3),
        "rmse_before": res.rmse_before,
        "rmse_after": res.rmse_after,
        "rmse_first_after": m["rmse_first"],
        "time_to_divergence_after_s": m["time_to_divergence_s"],
        "windows": res.windows,
        "windows_skipped": res.skipped,
        "timing_shift_ms": [round(x * 1e3, 3) for x in res.shifts],
        "window_s": res.window_s,
        "logs": len(paths),
        "evaluations": res.evaluations,
        "message": res.message,
        "fitted_reality": str(reality_path),
        "suggested_randomization": str(suggested_path),
    }
    if cfg.plots:
        figs["fit"] = report().plot_fit(out, [x.name for x in spec.sensors], res.example)


def _traces(paths: list[Path], datas: list[Any], spec) -> list[Any]:
    """Each log as a trace; a log of another robot is bad input. Timing comes from the
    clock brackets: the fit places the commands inside them."""
    from firmware_bridge.analysis import sysid

    traces = []
    for p, d in zip(paths, datas, strict=True):
        if d.run.get("robot") != spec.name:
            raise UserError(
                f"log {p} is for robot '{d.run.get('robot')}', the first log for '{spec.name}'"
            )
        try:
            traces.append(sysid.trace_from_log(d, spec))
        except sysid.ReplayError as e:
            raise Skip(f"log {p}: {e}") from None
    return traces


def _write_configs(res, model, spec, paths: list[Path], out: Path) -> tuple[Path, Path]:
    """fitted_reality.yaml and suggested_randomization.yaml in `out`, each headed by the
    logs it was fitted on and the error before and after."""
    reality_path = out / "fitted_reality.yaml"
    suggested_path = out / "suggested_randomization.yaml"
    header = (
        f"# Fitted by firmware_bridge.replay on {len(paths)} log(s): {', '.join(str(p) for p in paths)}\n"
        f"# window error (normalized RMS) {res.error_before:.4g} -> {res.error_after:.4g}\n"
    )
    reality_path.write_text(header + yaml.safe_dump(fitted_reality(res), sort_keys=False))
    suggested_path.write_text(
        header
        + "# The default randomization ranges, re-centred on the fitted values.\n"
        + yaml.safe_dump(
            suggested_randomization(res, model, default_randomization(spec.name)),
            sort_keys=False,
        )
    )
    return reality_path, suggested_path
