"""The run as the log records it, for `firmware_bridge.replay`: what the log is and what of
it is missing, the robot spec it names, duration, rate, timing figures, state gaps, faults
and events (from the writer's closing summary where it closed the log, else computed from
the messages), and the spec's success test on the logged sensors against the logged goal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from firmware_bridge.analysis.replay_sections import Skip, log
from firmware_bridge.host.loop import pct

_CLOSING_KEYS = (
    "missed_deadlines",
    "faults",
    "stopped_by",
    "dropped_frames",
    "states_received",
    "log_dropped",
)
"""The closing summary's figures that replace those computed from the messages."""


def log_facts(data, path: Path, missing: list[str]) -> dict[str, Any]:
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


def robot_spec(run: dict[str, Any]):
    """The robot spec the log names, at its rate and task; Skip where there is none or
    where the robot's sensors changed since the log was written."""
    from envs.robots import get_robot
    from envs.spec import RobotSpec, SpecError

    name = run.get("robot")
    if not name:
        raise Skip("the log names no robot (no run metadata)")
    layout = run.get("robot_layout")
    task = layout.get("task") if isinstance(layout, dict) else None  # absent: default task
    try:
        spec = get_robot(str(name), float(run.get("rate_hz") or 0) or None, task)
    except SpecError as e:
        raise Skip(str(e)) from None
    if isinstance(layout, dict) and RobotSpec.hash_layout(layout) != spec.layout_hash():
        logged = len(layout.get("sensors", []))
        if logged != spec.n_sensors:
            raise Skip(f"the log has {logged} sensors, robot '{name}' now has {spec.n_sensors}")
        log.warning("robot '%s' layout changed since the log was written (limits or names)", name)
    return spec


def run_summary(data, spec) -> tuple[dict[str, Any], dict[str, Any]]:
    """Duration, rate, timing figures, faults: from the summary record if the writer closed
    the log, else computed from the messages (a killed writer). Also the arrays the timing
    and timeline figures draw."""
    timing = data.topic("/timing")
    cmds = data.topic("/command")
    rate = float(data.run.get("rate_hz") or (spec.control_hz if spec else 0) or 0) or None
    th = (
        np.array([r["t_host"] for r in timing]) if timing else np.array([c["t_host"] for c in cmds])
    )
    out = _rate_and_duration(rate, max(len(timing), len(cmds)), th)
    arrays: dict[str, Any] = {"timing": {}, "period": 1.0 / rate if rate else None}
    missed_t = limited_t = np.zeros(0)
    if timing:
        figures, arrays["timing"], missed_t = _timing_figures(timing, th)
        out.update(figures)
    else:
        out["missed_deadlines"] = None
    if cmds:
        lim = np.array([bool(c.get("limited")) for c in cmds])
        limited_t = np.array([c["t_host"] for c in cmds])[lim]
        out["limited_ticks"] = int(lim.sum())
    gaps = _state_gaps(data.topic("/state"), rate)
    if gaps is not None:
        out["state_gaps"] = gaps
    out.update(_events(data.topic("/events")))
    _apply_closing_summary(data.metadata.get("summary"), out)
    arrays["missed_t"], arrays["limited_t"] = missed_t, limited_t
    return out, arrays


def _rate_and_duration(rate: float | None, ticks: int, th: np.ndarray) -> dict[str, Any]:
    """Ticks, rate, duration (ticks at the rate, else the host clock span) and the rate
    achieved on the host clock."""
    out: dict[str, Any] = {"ticks": ticks, "rate_hz": rate}
    out["duration_s"] = (
        round(ticks / rate, 3) if rate else (round(float(th[-1] - th[0]), 3) if th.size else 0.0)
    )
    out["achieved_rate_hz"] = (
        round((th.size - 1) / float(th[-1] - th[0]), 3) if th.size > 1 and th[-1] > th[0] else None
    )
    return out


def _timing_figures(
    timing: list[dict], th: np.ndarray
) -> tuple[dict[str, Any], dict[str, np.ndarray], np.ndarray]:
    """From the TIMING messages: missed deadlines and the percentiles of period error, state
    age and compute time; the per-tick arrays the timing figure draws; the missed ticks'
    host times."""
    pe = np.array([r.get("period_error_us", np.nan) for r in timing], dtype=float)
    age = np.array([r.get("state_age_ms", np.nan) for r in timing], dtype=float)
    comp = np.array([r.get("compute_us", np.nan) for r in timing], dtype=float)
    missed = np.array([bool(r.get("missed")) for r in timing])
    arrays = {"t": th, "period_error_us": pe, "state_age_ms": age, "compute_us": comp}
    figures = {
        "missed_deadlines": int(missed.sum()),
        "period_error_p50_us": pct(np.abs(pe), 50),
        "period_error_p99_us": pct(np.abs(pe), 99),
        "period_error_max_us": pct(np.abs(pe), 100),
        "state_age_p50_ms": pct(age, 50),
        "state_age_p99_ms": pct(age, 99),
        "compute_p50_us": pct(comp, 50),
        "compute_p99_us": pct(comp, 99),
    }
    return figures, arrays, th[missed]


def _state_gaps(states: list[dict], rate: float | None) -> dict[str, Any] | None:
    """STATE intervals on the controller clock more than a quarter period off the rate
    (the first boot's clock only: a controller reset starts another); None without a rate
    or with fewer than two STATEs."""
    if not rate or len(states) <= 1:
        return None
    from firmware_bridge.logs.rollout_log import controller_seconds

    tu, reset_at = controller_seconds([x["t_us"] for x in states if "t_us" in x])
    tu = tu[:reset_at]  # a controller reset starts another clock
    gaps = np.diff(tu)
    bad = np.flatnonzero(np.abs(gaps - 1.0 / rate) > 0.25 / rate)
    return {
        "count": int(bad.size),
        "max_ms": round(float(gaps.max()) * 1e3, 3) if gaps.size else None,
        "at_s": [round(float(tu[i] - tu[0]), 3) for i in bad[:10]],
    }


def _events(events: list[dict]) -> dict[str, Any]:
    """The number of events and the faults among them (kind, message, host time)."""
    return {
        "events": len(events),
        "faults": [
            {
                "kind": e["message"].split(":", 1)[0],
                "message": e["message"],
                "t_host": e.get("t_host"),
            }
            for e in events
            if e.get("kind") == "fault"
        ],
    }


def _apply_closing_summary(closing: dict[str, Any] | None, out: dict[str, Any]) -> None:
    """The writer's own figures replace the computed ones (its missed deadlines include
    skipped grid ticks); no closing summary: how the run stopped is unknown."""
    if not closing:
        out["stopped_by"] = "unknown (no closing summary in the log)"
        return
    for k in _CLOSING_KEYS:
        if k in closing:
            try:
                out[k] = json.loads(closing[k])
            except json.JSONDecodeError:
                out[k] = closing[k]


def per_tick_sensors(states: list[dict], ticks: int, n: int) -> np.ndarray:
    """(ticks, n) the sensors each tick used: the newest STATE received by that tick."""
    st = [x for x in states if len(x.get("sensors", ())) == n and "tick" in x]
    if not st or ticks == 0:
        return np.zeros((0, n))
    tick_of = np.maximum.accumulate(np.array([x["tick"] for x in st]))
    vals = np.array([x["sensors"] for x in st], dtype=float)
    idx = np.searchsorted(tick_of, np.arange(ticks), side="right") - 1
    return vals[np.clip(idx, 0, len(st) - 1)]


def success(data, spec, ticks: int) -> dict[str, Any]:
    """The spec's success test on the sensors each tick used, against the run's logged goal
    (a goal-directed task): over the first episode and over the whole run."""
    goal = run_goal(data.run, spec)
    sens = per_tick_sensors(data.topic("/state"), ticks, spec.n_sensors)
    if sens.shape[0] == 0:
        raise Skip("no STATE messages")
    ep = spec.episode_steps
    if sens.shape[0] < ep:  # not a defect of the log: the run was shorter than an episode
        note = f"the run has {sens.shape[0]} ticks, the success test needs an episode of {ep}"
        return {"success": None, "success_end": None, "success_note": note}
    return {
        "success": bool(spec.success(sens[None, :ep], goal)[0]),
        "success_end": bool(spec.success(sens[None], goal)[0]),
    }


def run_goal(run: dict[str, Any], spec) -> np.ndarray | None:
    """(1, goal_dim) the goal the run record logs (deploy `goal=`/`goal_seed`, a simulated
    episode's sampled goal); None for a task without one. Skip where the task needs a goal
    and the log has none, or one of another size."""
    if not spec.goal_dim:
        return None
    task = f"task '{spec.task_name}' of '{spec.name}'"
    goal = run.get("goal")
    if goal is None:
        raise Skip(f"the log records no goal, and {task} is scored against one")
    try:
        g = np.asarray(goal, dtype=np.float64).reshape(1, -1)
    except (TypeError, ValueError):
        raise Skip(f"the logged goal {goal!r} is not a list of numbers") from None
    if g.shape[1] != spec.goal_dim or not np.all(np.isfinite(g)):
        raise Skip(
            f"the logged goal {goal} is not {spec.goal_dim} finite numbers ({task}: "
            f"{', '.join(spec.goal_names)})"
        )
    return g
