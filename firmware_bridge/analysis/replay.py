"""`python -m firmware_bridge.replay log=PATH [out_dir=DIR] [fit=[damping,...]] [render=true]`

Reads a rollout log (from `firmware_bridge.deploy`, or from `ppo_robot.evaluate log=...`)
and writes a report for a person (`report.md` and PNG figures in out_dir):

- the run: duration, achieved rate, period error and state age, faults and events on a
  timeline, the spec's success test on the logged sensors;
- policy re-check: the policy named in the log (its sha256 checked) run again on the logged
  observations; the largest difference from the logged actions (the deploy path: <= 1e-6);
- simulation replay: the robot's MJCF started from the first logged STATE, driven open-loop
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
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from omegaconf import OmegaConf

from firmware_bridge.analysis.replay_config import ReplayConfig
from firmware_bridge.host.loop import pct
from ppo_robot.cli import UserError, run_app, write_summary
from ppo_robot.paths import config_dir

log = logging.getLogger("replay")


def default_randomization(robot: str) -> Path:
    """The robot's `default` randomization (configs/randomization/<robot>/default.yaml)."""
    from ppo_robot.paths import robot_option

    return (
        config_dir() / "randomization" / f"{robot_option('randomization', 'default', robot)}.yaml"
    )


class _Skip(Exception):
    """A report section that cannot be done; the message says why."""


def _logs(cfg: Any) -> list[Path]:
    if OmegaConf.is_missing(cfg, "log") or cfg.log is None:
        raise UserError("log: give log=PATH (or log=[A,B] with fit=[...])")
    cfg_log = cfg.log
    items = OmegaConf.to_container(cfg_log) if OmegaConf.is_list(cfg_log) else cfg_log
    items = items if isinstance(items, list) else [items]
    if not items:
        raise UserError("log: the list of logs is empty")
    return [Path(str(p)) for p in items]


def _check_given_files(cfg: Any, run: dict[str, Any]) -> None:
    """Files given on the command line must exist and load (else one line, exit 2, before
    any output); files the log names but that are gone are reported in `missing` instead."""
    from envs.robots import get_robot
    from envs.spec import SpecError
    from export.runtime import OnnxPolicy, PolicyError
    from ppo_robot.checkpoint import load_checkpoint

    robot = run.get("robot")
    if cfg.model_xml:
        try:
            if robot:
                get_robot(str(robot)).load_model(cfg.model_xml)
            elif not Path(cfg.model_xml).is_file():
                raise SpecError(f"MJCF file not found: {cfg.model_xml}")
        except SpecError as e:
            raise UserError(f"model_xml: {e}") from None
    if cfg.checkpoint:
        load_checkpoint(cfg.checkpoint)  # UserError naming the file
    if cfg.policy:
        try:
            pol = OnnxPolicy(cfg.policy)
        except PolicyError as e:
            raise UserError(str(e)) from None
        if robot and pol.info.robot != robot:
            raise UserError(
                f"policy: {cfg.policy} is for robot '{pol.info.robot}', the log for '{robot}'"
            )


def replay_command(cfg: Any) -> dict[str, Any]:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="replay: %(message)s")
    log.setLevel(logging.INFO)
    t_start = time.perf_counter()
    _import_mujoco(cfg)
    paths, fit_names, datas, out = _inputs(cfg)
    data = datas[0]
    run = data.run
    missing: list[str] = []
    figs: dict[str, str | None] = {}
    s = _log_facts(data, paths[0], missing)
    spec = _robot_section(cfg, run, fit_names, missing)
    _timing_section(data, spec, s, figs, out, missing)

    # ---- success on the logged sensors
    if spec is not None:
        _try(missing, "success", lambda: s.update(_success(data, spec, s.get("ticks") or 0)))

    # ---- policy re-check
    s["policy_max_abs_diff"] = None
    s["policy_recheck"] = None
    if spec is not None:
        _try(missing, "policy re-check", lambda: s.update(_policy_recheck(cfg, run, data, spec)))

    # ---- simulation replay, fit, render
    _model_sections(cfg, fit_names, datas, paths, spec, s, figs, out, missing)

    s["missing"] = missing
    s["rmse_horizon_s"] = None if cfg.rmse_horizon_s is None else float(cfg.rmse_horizon_s)
    s["out_dir"] = str(out)
    s["replay_wall_s"] = round(time.perf_counter() - t_start, 3)
    if cfg.plots:
        _try(
            missing,
            "report",
            lambda: _report().write_markdown(
                out, s, figs, OmegaConf.to_container(cfg, resolve=True)
            ),
        )
        s["report"] = str(out / "report.md")
    write_summary(s, out, name="replay.json")
    return s


def _import_mujoco(cfg: Any) -> None:
    """Import mujoco first here, headless rendering chosen where render=true has no display."""
    if cfg.render and "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"  # headless rendering; read when mujoco is imported
    try:
        import mujoco  # noqa: F401  (the first import: it reads MUJOCO_GL, here)
    except Exception as e:  # an invalid MUJOCO_GL, a broken GL library
        from ppo_robot.cli import one_line

        raise UserError(f"mujoco cannot be imported: {one_line(e)}") from None


def _inputs(cfg: Any) -> tuple[list[Path], list[str], list[Any], Path]:
    """The logs (read), the parameters to fit and the report folder (created); bad input
    refused with one line."""
    from firmware_bridge.logs.rollout_log import LogError, read_log

    paths = _logs(cfg)
    fit_names = [str(x) for x in (cfg.fit or [])]
    if len(paths) > 1 and not fit_names:
        raise UserError("log: a list of logs is for fitting (fit=[...]); give one log to replay")
    if fit_names and cfg.reality:
        raise UserError(
            "fit= fits multipliers of the nominal model; leave reality= out when fitting"
        )
    datas = []
    for p in paths:
        try:
            datas.append(read_log(p))
        except LogError as e:
            raise UserError(str(e)) from None
        except OSError as e:
            raise UserError(f"log {p} cannot be read ({e.strerror})") from None
    data = datas[0]
    _robot_windows(cfg, data.run)
    _check_given_files(cfg, data.run)
    out = Path(cfg.out_dir) if cfg.out_dir else paths[0].with_name(paths[0].stem + "-replay")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"out_dir {out} cannot be created ({e.strerror})") from None
    return paths, fit_names, datas, out


def _log_facts(data, path: Path, missing: list[str]) -> dict[str, Any]:
    """The summary's first keys: what the log is and what of it is missing."""
    s: dict[str, Any] = {"log": str(path)}
    run = data.run
    s["simulated"] = bool(run.get("simulated", False))
    s["truncated"] = data.truncated
    if data.problem:
        s["log_problem"] = data.problem.strip()
    if data.truncated:
        missing.append(
            f"end of log: the file is cut short ({data.problem}); everything before the cut is used"
        )
    if "summary" not in data.metadata and not data.truncated and "run" in data.metadata:
        missing.append(
            "run summary record: the writer did not close the log (killed?); figures are computed from the messages"
        )
    s["robot"] = run.get("robot")
    s["source"] = run.get("source")
    s["start_time"] = run.get("start_time")
    s["policy_path"] = run.get("policy_path") or run.get("checkpoint")

    if "run" not in data.metadata:
        topics = ", ".join(sorted(data.messages)) or "none"
        missing.append(
            f"run metadata: this MCAP file was not written by ppo-robot (topics: {topics})"
        )
    return s


def _robot_section(cfg: Any, run: dict[str, Any], fit_names: list[str], missing: list[str]):
    """The robot spec of the log (None: named in `missing`); bad fit names refused."""
    spec = None
    try:
        spec = _spec(run)
    except _Skip as e:
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
    summ, arrays = _run_summary(data, spec)
    s.update(summ)
    if spec is not None and "/state" not in data.messages:
        missing.append("STATE messages: none in the log")
    if "/timing" not in data.messages:
        missing.append(
            "timing messages: none in the log (no period error, state age or compute figures)"
        )
    if arrays["timing"]:
        figs["timing"] = _try(
            missing,
            "timing figure",
            lambda: _report().plot_timing(out, arrays["timing"], arrays["period"]),
        )
    figs["timeline"] = _try(
        missing,
        "timeline figure",
        lambda: _report().plot_timeline(
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
        _try(
            missing,
            "simulation replay",
            lambda: sim_ctx.update(_sim_replay(cfg, run, data, spec, s, figs, out)),
        )
    for k in ("sim_rmse", "sim_rmse_first", "correlation", "time_to_divergence_s"):
        s.setdefault(k, None)

    # ---- fit
    if fit_names:
        if spec is None or not sim_ctx:
            missing.append("fit: needs the simulation replay of the first log")
        else:
            _try(
                missing,
                "fit",
                lambda: _fit(cfg, fit_names, datas, paths, spec, sim_ctx, s, figs, out),
            )

    # ---- render
    if cfg.render:
        if not sim_ctx:
            s["render"] = "unavailable: no simulation replay to render"
        else:
            _try(missing, "render", lambda: s.update(_render(cfg, sim_ctx, out)))
    return sim_ctx


def _report():
    from firmware_bridge.analysis import report

    return report


def _try(missing: list[str], what: str, fn) -> Any:
    """Run one report section; a failure is named in `missing`, never a traceback.
    Bad input (UserError) still ends the program with its one line."""
    try:
        return fn()
    except UserError:
        raise
    except _Skip as e:
        missing.append(f"{what}: {e}")
    except Exception as e:  # a damaged log can break a section in many ways; report, go on
        from ppo_robot.cli import one_line

        log.debug("%s failed", what, exc_info=True)
        missing.append(f"{what}: {type(e).__name__}: {one_line(e)}")
    return None


def _robot_windows(cfg: Any, run: dict[str, Any]) -> None:
    """rmse_horizon_s / window_s left null: the log's robot's (its robot.yaml); all > 0.
    A log of no registered robot keeps them null: it has no simulation to replay."""
    from envs.robots import robots, settings
    from envs.spec import SpecError

    robot = str(run.get("robot") or "")
    try:
        own = settings(robot) if robot in robots() else None
    except SpecError as e:
        raise UserError(str(e)) from None
    for k in ("rmse_horizon_s", "window_s"):
        if cfg[k] is None and own is not None:
            if own.get(k) is None:
                raise UserError(
                    f"{k} is null and robot '{run.get('robot')}' sets none (robot.yaml); give {k}="
                )
            cfg[k] = float(own[k])
    for k in ("rmse_horizon_s", "window_s", "divergence_frac"):
        if cfg[k] is not None and float(cfg[k]) <= 0:
            raise UserError(f"{k} must be > 0, got {cfg[k]}")


# ----------------------------------------------------------------------------- sections


def _spec(run: dict[str, Any]):
    from envs.robots import get_robot
    from envs.spec import RobotSpec, SpecError

    name = run.get("robot")
    if not name:
        raise _Skip("the log names no robot (no run metadata)")
    layout = run.get("robot_layout")
    task = layout.get("task") if isinstance(layout, dict) else None  # absent: default task
    try:
        spec = get_robot(str(name), float(run.get("rate_hz") or 0) or None, task)
    except SpecError as e:
        raise _Skip(str(e)) from None
    if isinstance(layout, dict) and RobotSpec.hash_layout(layout) != spec.layout_hash():
        logged = len(layout.get("sensors", []))
        if logged != spec.n_sensors:
            raise _Skip(f"the log has {logged} sensors, robot '{name}' now has {spec.n_sensors}")
        log.warning("robot '%s' layout changed since the log was written (limits or names)", name)
    return spec


def _run_summary(data, spec) -> tuple[dict[str, Any], dict[str, Any]]:
    """Duration, rate, timing figures, faults: from the summary record if the writer closed
    the log, else computed from the messages (a killed writer)."""
    run = data.run
    timing = data.topic("/timing")
    cmds = data.topic("/command")
    rate = float(run.get("rate_hz") or (spec.control_hz if spec else 0) or 0) or None
    ticks = max(len(timing), len(cmds))
    th = (
        np.array([r["t_host"] for r in timing]) if timing else np.array([c["t_host"] for c in cmds])
    )
    out: dict[str, Any] = {"ticks": ticks, "rate_hz": rate}
    out["duration_s"] = (
        round(ticks / rate, 3) if rate else (round(float(th[-1] - th[0]), 3) if th.size else 0.0)
    )
    out["achieved_rate_hz"] = (
        round((th.size - 1) / float(th[-1] - th[0]), 3) if th.size > 1 and th[-1] > th[0] else None
    )
    arrays: dict[str, Any] = {"timing": {}, "period": 1.0 / rate if rate else None}
    missed_t = limited_t = np.zeros(0)
    if timing:
        pe = np.array([r.get("period_error_us", np.nan) for r in timing], dtype=float)
        age = np.array([r.get("state_age_ms", np.nan) for r in timing], dtype=float)
        comp = np.array([r.get("compute_us", np.nan) for r in timing], dtype=float)
        missed = np.array([bool(r.get("missed")) for r in timing])
        arrays["timing"] = {"t": th, "period_error_us": pe, "state_age_ms": age, "compute_us": comp}
        missed_t = th[missed]
        out.update(
            {
                "missed_deadlines": int(missed.sum()),
                "period_error_p50_us": pct(np.abs(pe), 50),
                "period_error_p99_us": pct(np.abs(pe), 99),
                "period_error_max_us": pct(np.abs(pe), 100),
                "state_age_p50_ms": pct(age, 50),
                "state_age_p99_ms": pct(age, 99),
                "compute_p50_us": pct(comp, 50),
                "compute_p99_us": pct(comp, 99),
            }
        )
    else:
        out["missed_deadlines"] = None
    if cmds:
        lim = np.array([bool(c.get("limited")) for c in cmds])
        limited_t = np.array([c["t_host"] for c in cmds])[lim]
        out["limited_ticks"] = int(lim.sum())
    states = data.topic("/state")
    if rate and len(states) > 1:
        from firmware_bridge.logs.rollout_log import controller_seconds

        tu, reset_at = controller_seconds([x["t_us"] for x in states if "t_us" in x])
        tu = tu[:reset_at]  # a controller reset starts another clock
        gaps = np.diff(tu)
        bad = np.flatnonzero(np.abs(gaps - 1.0 / rate) > 0.25 / rate)
        out["state_gaps"] = {
            "count": int(bad.size),
            "max_ms": round(float(gaps.max()) * 1e3, 3) if gaps.size else None,
            "at_s": [round(float(tu[i] - tu[0]), 3) for i in bad[:10]],
        }
    events = data.topic("/events")
    out["events"] = len(events)
    out["faults"] = [
        {"kind": e["message"].split(":", 1)[0], "message": e["message"], "t_host": e.get("t_host")}
        for e in events
        if e.get("kind") == "fault"
    ]
    closing = data.metadata.get("summary")
    if closing:  # the writer's own figures (missed deadlines include skipped grid ticks)
        for k in (
            "missed_deadlines",
            "faults",
            "stopped_by",
            "dropped_frames",
            "states_received",
            "log_dropped",
        ):
            if k in closing:
                try:
                    out[k] = json.loads(closing[k])
                except json.JSONDecodeError:
                    out[k] = closing[k]
    else:
        out["stopped_by"] = "unknown (no closing summary in the log)"
    arrays["missed_t"], arrays["limited_t"] = missed_t, limited_t
    return out, arrays


def per_tick_sensors(states: list[dict], ticks: int, n: int) -> np.ndarray:
    """(ticks, n) the sensors each tick used: the newest STATE received by that tick."""
    st = [x for x in states if len(x.get("sensors", ())) == n and "tick" in x]
    if not st or ticks == 0:
        return np.zeros((0, n))
    tick_of = np.maximum.accumulate(np.array([x["tick"] for x in st]))
    vals = np.array([x["sensors"] for x in st], dtype=float)
    idx = np.searchsorted(tick_of, np.arange(ticks), side="right") - 1
    return vals[np.clip(idx, 0, len(st) - 1)]


def _success(data, spec, ticks: int) -> dict[str, Any]:
    sens = per_tick_sensors(data.topic("/state"), ticks, spec.n_sensors)
    if sens.shape[0] == 0:
        raise _Skip("no STATE messages")
    ep = spec.episode_steps
    if sens.shape[0] < ep:  # not a defect of the log: the run was shorter than an episode
        note = f"the run has {sens.shape[0]} ticks, the success test needs an episode of {ep}"
        return {"success": None, "success_end": None, "success_note": note}
    return {
        "success": bool(spec.success(sens[None, :ep])[0]),
        "success_end": bool(spec.success(sens[None])[0]),
    }


def _policy_recheck(cfg, run, data, spec) -> dict[str, Any]:
    obs_rows = {int(r["tick"]): r["obs"] for r in data.topic("/observation") if "tick" in r}
    act_rows = {int(r["tick"]): r["action"] for r in data.topic("/action") if "tick" in r}
    ticks = sorted(set(obs_rows) & set(act_rows))
    if not ticks:
        raise _Skip("no logged observation/action pairs")
    obs = np.array([obs_rows[t] for t in ticks], dtype=np.float32)
    act = np.array([act_rows[t] for t in ticks], dtype=np.float64)
    if run.get("policy_path") or cfg.policy:
        from export.runtime import OnnxPolicy, PolicyError, file_sha256

        path = Path(cfg.policy or run["policy_path"])
        if not path.is_file():
            raise _Skip(f"policy file {path} is gone (give policy=PATH to the same file)")
        logged_sha = run.get("policy_sha256")
        sha = file_sha256(path)
        if logged_sha and sha != logged_sha:
            raise _Skip(
                f"{path} is not the logged policy (sha256 {sha[:12]}..., log has {str(logged_sha)[:12]}...)"
            )
        try:
            pol = OnnxPolicy(path)
        except PolicyError as e:
            raise _Skip(str(e)) from None
        if obs.shape[1] != pol.info.obs_dim:
            raise _Skip(
                f"logged observations have {obs.shape[1]} entries, the policy takes {pol.info.obs_dim}"
            )
        # One observation at a time, as the deploy loop ran it (bound buffers, same kernels).
        again = np.stack([np.array(pol.act(o), dtype=np.float64) for o in obs])
        kind = "onnx"
    elif run.get("simulated"):
        again = _torch_recheck(cfg, run, spec, obs)
        kind = "torch (checkpoint)"
    elif run.get("source") not in (None, "policy"):
        raise _Skip(f"the commands came from the '{run['source']}' source, not from a policy")
    else:
        raise _Skip("the log names no policy file")
    diff = float(np.max(np.abs(again - act))) if act.size else 0.0
    return {
        "policy_max_abs_diff": diff,
        "policy_recheck": kind,
        "policy_rechecked_ticks": len(ticks),
    }


def _torch_recheck(cfg, run, spec, obs: np.ndarray) -> np.ndarray:
    """A simulated log: the actor from its checkpoint, with the spec's action mapping."""
    import torch

    from firmware_bridge.sim.episodes import actor_sha256
    from ppo_robot.checkpoint import build_actor, load_checkpoint

    path = cfg.checkpoint or run.get("checkpoint")
    if not path:
        raise _Skip("the simulated log names no checkpoint (give checkpoint=PATH)")
    if not Path(path).is_file():
        raise _Skip(f"checkpoint {path} is gone (give checkpoint=PATH)")
    try:
        actor = build_actor(load_checkpoint(path))
    except UserError as e:
        raise _Skip(str(e)) from None
    if run.get("actor_sha256") and actor_sha256(actor) != run["actor_sha256"]:
        raise _Skip(f"checkpoint {path} holds another actor than the one that wrote the log")
    with torch.no_grad():  # one row at a time, as the episode ran it (same kernels)
        a = np.concatenate(
            [actor(torch.as_tensor(o[None], dtype=torch.float32)).numpy() for o in obs]
        )
    return spec.action_to_command(a.astype(np.float64))


def _model(cfg, run, spec):
    """The replay model and the latency: model_xml, reality and latency_s as configured."""
    from envs.randomization import RandomizationError, apply_reality, load
    from envs.spec import SpecError

    xml = cfg.model_xml or run.get("model_xml")
    try:
        model = spec.load_model(xml)
    except SpecError as e:
        raise _Skip(str(e)) from None
    lat = None
    pert = run.get("perturbation") if run.get("simulated") else None
    if isinstance(pert, dict) and pert.get("fields") and not cfg.model_xml and not cfg.reality:
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


def _sim_replay(cfg, run, data, spec, s, figs, out) -> dict[str, Any]:
    from firmware_bridge.analysis import sysid

    try:
        tr = sysid.trace_from_log(data, spec)
    except sysid.ReplayError as e:
        raise _Skip(str(e)) from None
    model, lat, xml = _model(cfg, run, spec)
    sim = sysid.Simulator(spec, model, int(cfg.nthread))
    if not sim.map.usable:
        raise _Skip("the robot's sensors include no jointpos sensor to start the model from")
    if sim.map.unmapped:
        tr.notes.append(
            f"joints without position sensors start at their reference pose: {sim.map.unmapped}"
        )
    if tr.cmd.shape[0] == 0:
        tr.notes.append("no COMMAND messages: the model runs with the safe command throughout")
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
    try:
        win = sysid.make_windows(sim, [tr], float(cfg.window_s))
        err = sysid.window_errors(sim, win, sysid.window_controls(win, [tr], lat, sim.dt))
        s["sim_rmse_windows"] = sysid.window_rmse(err, spec)
        s["window_s"] = float(cfg.window_s)
    except sysid.ReplayError as e:
        s["sim_rmse_windows"] = None
        tr.notes.append(str(e))
    if cfg.plots:
        rep = _report()
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
    return {"trace": tr, "sim": sim, "replay": rp, "latency": lat, "metrics": m}


def _fit(cfg, names, datas, paths, spec, ctx, s, figs, out) -> None:
    from firmware_bridge.analysis import sysid

    traces = []  # timing from the clock brackets: the fit places commands inside them
    for p, d in zip(paths, datas, strict=True):
        if d.run.get("robot") != spec.name:
            raise UserError(
                f"log {p} is for robot '{d.run.get('robot')}', the first log for '{spec.name}'"
            )
        try:
            traces.append(sysid.trace_from_log(d, spec))
        except sysid.ReplayError as e:
            raise _Skip(f"log {p}: {e}") from None
    sim = ctx["sim"]
    try:
        sysid.resolve_params(sim.model, names)
    except sysid.ReplayError as e:
        raise UserError(str(e)) from None
    res = sysid.fit(sim, traces, names, ctx["latency"], float(cfg.window_s), float(cfg.fit_bound))
    fitted_model = sysid.apply_fit(sim.model, res)
    lat_after = res.latency_s if res.latency_s is not None else ctx["latency"]
    rp = sysid.replay(sim, traces[0], lat_after + res.shifts[0], model=fitted_model)
    m = sysid.metrics(rp, spec, float(cfg.rmse_horizon_s), float(cfg.divergence_frac))
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
            suggested_randomization(res, sim.model, default_randomization(spec.name)),
            sort_keys=False,
        )
    )
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
        figs["fit"] = _report().plot_fit(out, [x.name for x in spec.sensors], res.example)


# ----------------------------------------------------------------------------- fit outputs


def fitted_reality(res) -> dict[str, Any]:
    """The fitted values as a reality perturbation (randomization schema, fixed values)."""
    params: dict[str, Any] = {}
    for name in res.params:
        for e in res.entries[name]:
            entry: dict[str, Any] = {"field": e.field, "targets": list(e.targets), "op": "scale"}
            if e.index is not None:
                entry["index"] = list(e.index)
            entry.update({"dist": "fixed", "value": round(res.values[name], 6)})
            params[e.key] = entry
    out: dict[str, Any] = {
        "name": "fitted",
        "description": "model fitted to rollout logs",
        "params": params,
    }
    if res.latency_s is not None:
        out["latency_s"] = round(res.latency_s, 6)
    return out


def suggested_randomization(res, model, base_path: Path) -> dict[str, Any]:
    """The default ranges re-centred on the fitted values: each scale range whose rows a
    fitted parameter covers is multiplied by the fitted multiplier (split per object where
    only some of its objects were fitted); fitted values without a default range get one of
    x0.8..x1.25 around them; a fitted latency moves the latency range to centre on it."""
    from envs.randomization import RandomizationError, parse
    from firmware_bridge.analysis.sysid import Entry

    base = yaml.safe_load(base_path.read_text()) or {}
    params = dict(base.get("params") or {})
    fitted_atoms: dict[tuple[str, str, int | None], float] = {}
    for name in res.params:
        for e in res.entries[name]:
            for tgt in _expand(model, e):
                for col in e.index or (None,):
                    fitted_atoms[(e.field, tgt, col)] = res.values[name]
    used: set[tuple] = set()
    out_params: dict[str, Any] = {}
    for key, p in params.items():
        if not isinstance(p, dict) or p.get("op", "scale") != "scale":
            out_params[key] = p
            continue
        e = Entry(
            key,
            str(p["field"]),
            tuple(p.get("targets", ["*"]))
            if not isinstance(p.get("targets"), str)
            else (p["targets"],),
            tuple(p["index"]) if p.get("index") is not None else None,
        )
        groups: dict[float | None, list[str]] = {}
        for tgt in _expand(model, e):
            mults = {fitted_atoms.get((e.field, tgt, c)) for c in (e.index or (None,))}
            for c in e.index or (None,):
                if (e.field, tgt, c) in fitted_atoms:
                    used.add((e.field, tgt, c))
            m = mults.pop() if len(mults) == 1 else None
            groups.setdefault(m, []).append(tgt)
        if set(groups) == {None}:
            out_params[key] = p
        elif len(groups) == 1:
            out_params[key] = _scaled(p, next(iter(groups)))
        else:
            for m, tgts in groups.items():
                for tgt in tgts:
                    q = dict(p, targets=[tgt])
                    out_params[f"{key}_{tgt}"] = _scaled(q, m) if m is not None else q
    for name in res.params:  # fitted entries the default does not randomize
        for e in res.entries[name]:
            left = [
                t
                for t in _expand(model, e)
                if any((e.field, t, c) not in used for c in (e.index or (None,)))
            ]
            if left:
                q: dict[str, Any] = {"field": e.field, "targets": left, "op": "scale"}
                if e.index is not None:
                    q["index"] = list(e.index)
                m = res.values[name]
                q.update(
                    {"dist": "log_uniform", "low": round(0.8 * m, 6), "high": round(1.25 * m, 6)}
                )
                q["source"] = f"fitted x{m:.4g} (no default range: x0.8..x1.25 around it)"
                out_params[e.key if e.key not in out_params else f"{e.key}_fitted"] = q
    out = dict(base)
    out["name"] = "suggested"
    out["params"] = out_params
    if res.latency_s is not None and isinstance(base.get("latency_s"), dict):
        lo, hi = float(base["latency_s"].get("low", 0.0)), float(base["latency_s"].get("high", 0.0))
        half = 0.5 * (hi - lo)
        f = res.latency_s
        out["latency_s"] = {
            "dist": base["latency_s"].get("dist", "uniform"),
            "low": round(max(0.0, f - half), 6),
            "high": round(f + half, 6),
        }
    try:
        parse(out, "suggested_randomization")
    except RandomizationError as e:  # pragma: no cover - a bug here, not bad input
        raise _Skip(f"suggested randomization does not parse: {e}") from None
    return out


def _expand(model, e) -> list[str]:
    """Object names an entry's targets select in the model."""
    import fnmatch

    import mujoco

    from envs.randomization import _NAME_COUNT, _PREFIX_OBJ

    obj = next(o for p, o in _PREFIX_OBJ.items() if e.field.startswith(p))
    names = [
        mujoco.mj_id2name(model, obj, i) or "" for i in range(getattr(model, _NAME_COUNT[obj]))
    ]
    return [n for n in names if n and any(fnmatch.fnmatchcase(n, t) for t in e.targets)]


def _scaled(p: dict[str, Any], m: float) -> dict[str, Any]:
    q = dict(p)
    for k in ("low", "high", "mean", "std", "value"):
        if k in q and isinstance(q[k], int | float):
            q[k] = round(float(q[k]) * m, 6)
    was = f"{p.get('low')}..{p.get('high')}" if "low" in p else str(p.get("value"))
    q["source"] = f"re-centred on the fitted x{m:.4g} (default {was})"
    return q


# ----------------------------------------------------------------------------- render


def _render(cfg, ctx, out: Path) -> dict[str, Any]:
    """The replay as a video: logged pose (left) and simulated pose (right)."""
    import mujoco

    sim, _tr, rp = ctx["sim"], ctx["trace"], ctx["replay"]
    w, h = int(cfg.render_width), int(cfg.render_height)
    try:
        renderer = mujoco.Renderer(sim.model, h, w)
    except Exception as e:  # no GL backend: mujoco raises several types
        from ppo_robot.cli import one_line

        return {
            "render": f"unavailable: no OpenGL backend (MUJOCO_GL={os.environ.get('MUJOCO_GL')}): {one_line(e)[:160]}"
        }
    fps = max(1, int(cfg.render_fps))
    frames_t = np.arange(0.0, rp.grid_t[-1], 1.0 / fps)
    gi = np.clip(np.searchsorted(rp.grid_t, frames_t), 0, rp.grid_t.size - 1)
    li = np.clip(np.searchsorted(rp.t, frames_t, side="right") - 1, 0, rp.t.size - 1)
    logged_q = sim.map.states(rp.logged[li], frames_t)[
        :, sim.map.qpos_at : sim.map.qpos_at + sim.model.nq
    ]
    d = mujoco.MjData(sim.model)
    cam = mujoco.MjvCamera()
    mujoco.mjv_defaultFreeCamera(sim.model, cam)
    mujoco.mj_forward(sim.model, d)
    # frame the moving bodies (not the static base): their centre, 3x their reach
    moving = np.flatnonzero(sim.model.body_weldid != 0)
    if moving.size:
        cam.lookat[:] = d.xpos[moving].mean(axis=0)
        cam.distance = 3.0 * max(0.05, float(sim.model.stat.extent) * 0.5)
    cam.elevation = -15.0
    cam.azimuth = 150.0
    sim.model.vis.headlight.ambient[:] = 0.4

    def frame(q: np.ndarray, label: str) -> np.ndarray:
        d.qpos[:] = q
        mujoco.mj_forward(sim.model, d)
        renderer.update_scene(d, cam)
        return _label(renderer.render(), label)

    try:
        import imageio_ffmpeg  # noqa: F401  (imageio's MP4 writer)

        has_mp4 = True
    except ImportError:
        has_mp4 = False
    import imageio.v2 as imageio

    if has_mp4:
        path = out / "replay.mp4"
        writer = imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=8)
        note = None
    else:
        path = out / "replay.gif"
        step = max(1, fps // 10)
        gi, logged_q = gi[::step], logged_q[::step]
        writer = imageio.get_writer(path, mode="I", duration=1000 * step / fps, loop=0)
        note = "MP4 needs imageio-ffmpeg, which is not installed: wrote an animated GIF at 10 fps instead"
    with writer:
        for k in range(gi.size):
            t = rp.grid_t[gi[k]]
            img = np.concatenate(
                [frame(logged_q[k], f"logged  t={t:5.2f} s"), frame(rp.qpos[gi[k]], "simulated")],
                axis=1,
            )
            writer.append_data(img)
    renderer.close()
    res: dict[str, Any] = {"render": str(path), "render_frames": int(gi.size)}
    if note:
        res["render_note"] = note
    return res


def _label(img: np.ndarray, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    im = Image.fromarray(img)
    ImageDraw.Draw(im).text((6, 4), text, fill=(255, 255, 255))
    return np.asarray(im)


def main() -> None:
    run_app("replay", replay_command, ReplayConfig)
