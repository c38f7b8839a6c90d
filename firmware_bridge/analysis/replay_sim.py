"""Simulation replay for `firmware_bridge.replay`: the robot's MJCF (model_xml, reality,
latency_s as configured, or the perturbation a simulated episode sampled, except for a fit:
that is of the nominal model) started from
the first logged STATE (a simulated episode's logged initial state) and driven open-loop by the logged commands at their arrival
times on the controller clock (`firmware_bridge.analysis.sysid`); per-sensor RMSE (whole
run, first `rmse_horizon_s`, in `window_s` windows restarted from the logged state),
correlation, time to divergence, and the traces and error figures.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from firmware_bridge.analysis.replay_sections import Skip, report
from ppo_robot.cli import UserError


def _model(cfg, run, spec):
    """The replay model and the latency: model_xml, reality and latency_s as configured."""
    from envs.randomization import RandomizationError, apply_reality, load
    from envs.spec import SpecError

    xml = cfg.model_xml or run.get("model_xml")
    try:
        model = spec.load_model(xml)
    except SpecError as e:
        raise Skip(str(e)) from None
    lat = None
    pert = run.get("perturbation") if run.get("simulated") else None
    logged = not cfg.model_xml and not cfg.reality and not cfg.fit  # a fit is of the nominal
    if isinstance(pert, dict) and pert.get("fields") and logged:
        _apply_logged_perturbation(model, pert)
        xml = f"{xml or spec.xml_path} with the perturbation the simulation sampled"
    if cfg.reality:
        try:
            rand = load(cfg.reality)
            _, pert = apply_reality(rand, model, tuple(x.name for x in spec.sensors))
        except RandomizationError as e:
            raise UserError(str(e)) from None
        lat = pert.latency_s if rand.latency_s is not None else None
    if cfg.latency_s is not None:
        lat = float(cfg.latency_s)
    elif lat is None:
        lat = float(run.get("latency_s") or 0.0)
    return model, float(lat), str(xml or spec.xml_path)


def _apply_logged_perturbation(model, pert: dict[str, Any]) -> None:
    """Write the model fields a simulated episode ran with (sim_log metadata) into `model`."""
    from envs.randomization import Binder, Dist, FieldRange, write_field

    for f in pert["fields"]:
        idx = tuple(f["index"]) if f.get("index") is not None else None
        fr = FieldRange(
            f["key"], f["field"], tuple(f["targets"]), f.get("op", "scale"), Dist(), idx
        )
        b = Binder._bind(fr, model)
        write_field(model, b, np.asarray(f["values"], dtype=np.float64).reshape(b.nominal.shape))
    if pert.get("gravity") is not None:
        model.opt.gravity[:] = pert["gravity"]


def sim_replay(cfg, run, data, spec, s, figs, out) -> dict[str, Any]:
    """Replay the log on the model; its figures into `s` and `figs`. Returns the context
    that fit and render go on from: trace, simulator, replay, latency, metrics."""
    from firmware_bridge.analysis import sysid

    tr, sim, lat, xml = _simulator(cfg, run, data, spec)
    sysid.refine_offset(sim, tr, lat, float(cfg.window_s))
    rp = sysid.replay(sim, tr, lat)
    m = sysid.metrics(rp, spec, float(cfg.rmse_horizon_s), float(cfg.divergence_frac))
    s.update(
        {
            "model_xml": xml,
            "reality": cfg.reality,
            "latency_s": lat,
            "timing": tr.timing.as_dict(),
            "sim_rmse": m["rmse"],
            "sim_rmse_first": m["rmse_first"],
            "correlation": m["correlation"],
            "correlation_first": m["correlation_first"],
            "time_to_divergence_s": m["time_to_divergence_s"],
            "divergence_threshold": m["divergence_threshold"],
        }
    )
    if tr.notes:
        s["replay_notes"] = tr.notes
    _window_rmse(cfg, spec, sim, tr, lat, s)
    if cfg.plots:
        _figures(cfg, spec, tr, rp, lat, m, figs, out)
    return {"trace": tr, "sim": sim, "replay": rp, "latency": lat, "metrics": m}


def _simulator(cfg, run, data, spec):
    """The log as a trace and the simulator to replay it on, with the latency and the
    model's description; what the replay cannot start from noted on the trace."""
    from firmware_bridge.analysis import sysid

    try:
        tr = sysid.trace_from_log(data, spec)
    except sysid.ReplayError as e:
        raise Skip(str(e)) from None
    model, lat, xml = _model(cfg, run, spec)
    sim = sysid.Simulator(spec, model, int(cfg.nthread))
    if not sim.map.usable:
        raise Skip("the robot's sensors include no jointpos sensor to start the model from")
    if sim.map.unmapped:
        tr.notes.append(
            f"joints without position sensors start at their reference pose: {sim.map.unmapped}"
        )
    if tr.cmd.shape[0] == 0:
        tr.notes.append("no COMMAND messages: the model runs with the safe command throughout")
    return tr, sim, lat, xml


def _window_rmse(cfg, spec, sim, tr, lat: float, s: dict[str, Any]) -> None:
    """Per-sensor RMSE in `window_s` windows restarted from the logged state; a log too
    short for a window gets None and a note on the trace."""
    from firmware_bridge.analysis import sysid

    try:
        win = sysid.make_windows(sim, [tr], float(cfg.window_s))
        err = sysid.window_errors(sim, win, sysid.window_controls(win, [tr], lat, sim.dt))
        s["sim_rmse_windows"] = sysid.window_rmse(err, spec)
        s["window_s"] = float(cfg.window_s)
    except sysid.ReplayError as e:
        s["sim_rmse_windows"] = None
        tr.notes.append(str(e))


def _figures(cfg, spec, tr, rp, lat: float, m: dict[str, Any], figs, out) -> None:
    """The traces figure (logged, simulated, commands) and the error figure."""
    rep = report()
    names = [x.name for x in spec.sensors]
    cmd_t = tr.arrivals(lat) - tr.t[0]
    figs["traces"] = rep.plot_traces(
        out,
        names,
        [x.unit for x in spec.sensors],
        rp.t,
        rp.logged,
        cmd_t,
        tr.cmd,
        [a.name for a in spec.actuators],
        {"simulated": (rp.t, rp.sim, "-")},
        float(cfg.rmse_horizon_s),
    )
    figs["error"] = rep.plot_error(
        out,
        names,
        rp.t,
        rp.sim - rp.logged,
        m["divergence_threshold"],
        m["time_to_divergence_s"],
    )
