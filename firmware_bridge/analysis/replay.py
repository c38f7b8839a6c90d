"""`python -m firmware_bridge.replay log=PATH [out_dir=DIR] [fit=[damping,...]] [render=true]`

Reads a rollout log (from `firmware_bridge.deploy`, or from `ppo_robot.evaluate log=...`)
and writes a report for a person (`report.md` and PNG figures in out_dir):

- the run: duration, achieved rate, period error and state age, faults and events on a
  timeline, the spec's success test on the logged sensors (against the logged goal, for a
  goal-directed task);
- policy re-check: the policy named in the log (its sha256 checked) run again on the logged
  observations; the largest difference from the logged actions (the deploy path: <= 1e-6);
- simulation replay: the robot's MJCF started from the first logged STATE (a simulated
  episode: from its logged initial state, which reproduces it), driven open-loop
  by the logged commands at their arrival times on the controller clock
  (`firmware_bridge.analysis.sysid`); per-sensor RMSE (whole run, first `rmse_horizon_s`, and in
  `window_s` windows restarted from the logged state), correlation, time to divergence;
- `fit=[...]`: model parameters fitted to one or more logs (`log=[a,b]`), written as a
  reality perturbation (`fitted_reality.yaml`) and a re-centred randomization config
  (`suggested_randomization.yaml`), with the error before and after;
- `render=true`: the replay rendered to MP4 (logged pose left, simulated right).

Ends with one JSON line (saved as out_dir/replay.json). A part of the log that is missing
or unusable (a truncated file, a policy file that is gone) is named in `missing` and the
rest is still reported; a file that is not a rollout log is refused with one line, exit 2.

This module runs the sections in order and writes the summary; each section is its own
module: the command line (`replay_inputs`), the run as logged (`replay_run`), the policy
re-check (`replay_recheck`), the simulation replay (`replay_sim`), the fit
(`replay_fit`, its configs in `fitted_configs`), the video (`replay_render`); how a
section that fails is reported is `replay_sections`, the report itself `report`.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from firmware_bridge.analysis.fitted_configs import (
    default_randomization,
    fitted_reality,
    suggested_randomization,
)
from firmware_bridge.analysis.replay_config import ReplayConfig
from firmware_bridge.analysis.replay_fit import fit_section
from firmware_bridge.analysis.replay_inputs import import_mujoco, read_inputs
from firmware_bridge.analysis.replay_recheck import policy_recheck
from firmware_bridge.analysis.replay_render import render
from firmware_bridge.analysis.replay_run import (
    log_facts,
    per_tick_sensors,
    robot_spec,
    run_summary,
    success,
)
from firmware_bridge.analysis.replay_sections import Skip, log, report, run_section
from firmware_bridge.analysis.replay_sim import sim_replay
from ppo_robot.cli import UserError, run_app, typed_config, write_summary

__all__ = [
    "default_randomization",
    "fitted_reality",
    "main",
    "per_tick_sensors",
    "replay_command",
    "suggested_randomization",
]


def replay_command(raw: Any) -> dict[str, Any]:
    """Every section of the report in turn, each one that fails named in `missing`; the
    summary (also out_dir/replay.json)."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="replay: %(message)s")
    log.setLevel(logging.INFO)
    t_start = time.perf_counter()
    cfg: ReplayConfig = typed_config(raw, ReplayConfig)
    import_mujoco(cfg)
    cfg, paths, fit_names, datas, out = read_inputs(cfg)
    data = datas[0]
    run = data.run
    missing: list[str] = []
    figs: dict[str, str | None] = {}
    s = log_facts(data, paths[0], missing)
    spec = _robot_section(cfg, run, fit_names, missing)
    _timing_section(data, spec, s, figs, out, missing)

    # ---- success on the logged sensors
    if spec is not None:
        run_section(missing, "success", lambda: s.update(success(data, spec, s.get("ticks") or 0)))

    # ---- policy re-check
    s["policy_max_abs_diff"] = None
    s["policy_recheck"] = None
    if spec is not None:
        run_section(
            missing, "policy re-check", lambda: s.update(policy_recheck(cfg, run, data, spec))
        )

    # ---- simulation replay, fit, render
    _model_sections(cfg, fit_names, datas, paths, spec, s, figs, out, missing)

    s["missing"] = missing
    s["rmse_horizon_s"] = None if cfg.rmse_horizon_s is None else float(cfg.rmse_horizon_s)
    s["out_dir"] = str(out)
    s["replay_wall_s"] = round(time.perf_counter() - t_start, 3)
    if cfg.plots:
        run_section(
            missing,
            "report",
            lambda: report().write_markdown(out, s, figs, asdict(cfg)),
        )
        s["report"] = str(out / "report.md")
    write_summary(s, out, name="replay.json")
    return s


def _robot_section(
    cfg: ReplayConfig, run: dict[str, Any], fit_names: list[str], missing: list[str]
):
    """The robot spec of the log (None: named in `missing`); bad fit names refused."""
    spec = None
    try:
        spec = robot_spec(run)
    except Skip as e:
        missing.append(f"robot spec: {e}")
        missing += [
            f"{x}: needs the robot spec"
            for x in ("success", "policy re-check", "simulation replay")
        ]
    if fit_names and spec is not None:  # bad parameter names are bad input: refuse up front
        from firmware_bridge.analysis.sysid import ReplayError, resolve_params

        try:
            resolve_params(spec.load_model(cfg.model_xml or run.get("model_xml")), fit_names)
        except ReplayError as e:
            raise UserError(str(e)) from None
        except Exception:  # the model itself is reported by the replay section
            pass
    return spec


def _timing_section(data, spec, s: dict[str, Any], figs, out: Path, missing: list[str]) -> None:
    """Run summary, timing, events: their figures and the timing and timeline plots."""
    summ, arrays = run_summary(data, spec)
    s.update(summ)
    if spec is not None and "/state" not in data.messages:
        missing.append("STATE messages: none in the log")
    if "/timing" not in data.messages:
        missing.append(
            "timing messages: none in the log (no period error, state age or compute figures)"
        )
    if arrays["timing"]:
        figs["timing"] = run_section(
            missing,
            "timing figure",
            lambda: report().plot_timing(out, arrays["timing"], arrays["period"]),
        )
    figs["timeline"] = run_section(
        missing,
        "timeline figure",
        lambda: report().plot_timeline(
            out,
            s.get("duration_s") or 0.0,
            data.topic("/events"),
            arrays["missed_t"],
            arrays["limited_t"],
        ),
    )


def _model_sections(cfg, fit_names, datas, paths, spec, s, figs, out, missing) -> dict[str, Any]:
    """Simulation replay of the first log, then fit and render on it; its context."""
    data = datas[0]
    run = data.run
    sim_ctx: dict[str, Any] = {}
    if spec is not None:
        run_section(
            missing,
            "simulation replay",
            lambda: sim_ctx.update(sim_replay(cfg, run, data, spec, s, figs, out)),
        )
    for k in ("sim_rmse", "sim_rmse_first", "correlation", "time_to_divergence_s"):
        s.setdefault(k, None)

    # ---- fit
    if fit_names:
        if spec is None or not sim_ctx:
            missing.append("fit: needs the simulation replay of the first log")
        else:
            run_section(
                missing,
                "fit",
                lambda: fit_section(cfg, fit_names, datas, paths, spec, sim_ctx, s, figs, out),
            )

    # ---- render
    if cfg.render:
        if not sim_ctx:
            s["render"] = "unavailable: no simulation replay to render"
        else:
            run_section(missing, "render", lambda: s.update(render(cfg, sim_ctx, out)))
    return sim_ctx


def main() -> None:
    run_app("replay", replay_command, ReplayConfig)
