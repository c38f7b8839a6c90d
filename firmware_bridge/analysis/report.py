"""The replay report for a person: PNG figures and `report.md`, from what replay computed.

Every figure is drawn from whatever parts of the log were readable; a part that is missing
is named in the report instead of drawn. Matplotlib runs headless (Agg).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    fig.savefig(path, dpi=90)
    _plt().close(fig)
    return path.name


# ----------------------------------------------------------------------------- figures


def plot_timing(out: Path, timing: dict[str, np.ndarray], period_s: float | None) -> str | None:
    """Period error and state age histograms, compute time per tick."""
    pe, age, comp = (
        timing.get("period_error_us"),
        timing.get("state_age_ms"),
        timing.get("compute_us"),
    )
    if pe is None or pe.size == 0:
        return None
    plt = _plt()
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.4))
    ax[0].hist(pe[np.isfinite(pe)], bins=60, color="tab:blue")
    ax[0].set(title="period error", xlabel="us (tick start - deadline)", ylabel="ticks")
    ax[0].set_yscale("log")
    a = age[np.isfinite(age)] if age is not None else np.zeros(0)
    if a.size:
        ax[1].hist(a, bins=60, color="tab:orange")
        ax[1].set_yscale("log")
    ax[1].set(title="state age", xlabel="ms (tick start - STATE stamp)")
    if comp is not None and comp.size:
        ax[2].plot(timing["t"], comp, lw=0.6, color="tab:green")
        if period_s:
            ax[2].axhline(period_s * 1e6, color="red", lw=0.8, ls="--", label="period")
            ax[2].legend(loc="upper right", fontsize=8)
    ax[2].set(title="compute per tick", xlabel="s", ylabel="us")
    fig.tight_layout()
    return _save(fig, out / "timing.png")


def plot_timeline(
    out: Path, duration: float, events: list[dict], missed_t: np.ndarray, limited_t: np.ndarray
) -> str:
    """Events, faults, missed deadlines and limited commands on one time axis."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(13, 2.6))
    rows = {"missed deadline": 0, "command limited": 1, "event": 2, "fault": 3}
    if missed_t.size:
        ax.plot(
            missed_t, np.full(missed_t.size, rows["missed deadline"]), "|", color="tab:red", ms=12
        )
    if limited_t.size:
        ax.plot(
            limited_t,
            np.full(limited_t.size, rows["command limited"]),
            "|",
            color="tab:orange",
            ms=12,
        )
    for e in events:
        fault = e.get("kind") in ("fault", "refused")
        y = rows["fault"] if fault else rows["event"]
        t = float(e.get("t_host", 0.0))
        ax.plot([t], [y], "v" if fault else "o", color="tab:red" if fault else "tab:blue")
        ax.annotate(
            str(e.get("kind")), (t, y), textcoords="offset points", xytext=(3, 5), fontsize=7
        )
    ax.set_yticks(list(rows.values()), list(rows.keys()))
    ax.set_ylim(-0.7, 3.8)
    ax.set_xlim(-0.05 * max(duration, 1e-3), max(duration, 1e-3) * 1.05)
    ax.set_xlabel("host time since loop start (s)")
    ax.set_title("timeline")
    fig.tight_layout()
    return _save(fig, out / "timeline.png")


def plot_traces(
    out: Path,
    names: list[str],
    units: list[str],
    t_log: np.ndarray,
    logged: np.ndarray,
    cmd_t: np.ndarray,
    cmd: np.ndarray,
    cmd_names: list[str],
    sim: dict[str, Any] | None,
    horizon_s: float,
    name: str = "traces.png",
) -> str:
    """Logged sensors (and the simulation replay over them) and the commands."""
    plt = _plt()
    n = len(names) + 1
    fig, ax = plt.subplots(n, 1, figsize=(13, 2.0 * n), sharex=True)
    for i, nm in enumerate(names):
        ax[i].plot(t_log, logged[:, i], lw=0.9, color="black", label="logged")
        if sim is not None:
            for label, (tt, vals, style) in sim.items():
                ax[i].plot(tt, vals[:, i], style, lw=0.9, label=label)
        ax[i].set_ylabel(f"{nm}\n({units[i]})", fontsize=8)
        ax[i].axvspan(0, horizon_s, color="tab:green", alpha=0.06)
    ax[0].legend(loc="upper right", fontsize=8, ncol=4)
    for j, cn in enumerate(cmd_names):
        ax[-1].step(cmd_t, cmd[:, j], where="post", lw=0.8, label=cn)
    ax[-1].set_ylabel("command", fontsize=8)
    ax[-1].legend(loc="upper right", fontsize=8)
    ax[-1].set_xlabel("controller time since the first STATE (s); green: the RMSE horizon")
    fig.tight_layout()
    return _save(fig, out / name)


def plot_error(
    out: Path, names: list[str], t: np.ndarray, err: np.ndarray, thresh: dict, ttd: dict
) -> str:
    """|simulated - logged| per sensor on a log scale, divergence threshold and time."""
    plt = _plt()
    fig, ax = plt.subplots(len(names), 1, figsize=(13, 1.8 * len(names)), sharex=True)
    ax = np.atleast_1d(ax)
    for i, nm in enumerate(names):
        ax[i].semilogy(t, np.abs(err[:, i]) + 1e-12, lw=0.8)
        ax[i].axhline(thresh[nm], color="red", ls="--", lw=0.8)
        if ttd.get(nm) is not None:
            ax[i].axvline(ttd[nm], color="red", lw=0.8)
        ax[i].set_ylabel(nm, fontsize=8)
    ax[-1].set_xlabel("s; dashed: divergence threshold, solid: time to divergence")
    fig.tight_layout()
    return _save(fig, out / "replay_error.png")


def plot_fit(out: Path, names: list[str], ex: dict[str, np.ndarray]) -> str | None:
    """Some multiple-shooting windows: logged, nominal model, fitted model."""
    if not ex:
        return None
    plt = _plt()
    fig, ax = plt.subplots(len(names), 1, figsize=(13, 1.9 * len(names)), sharex=True)
    ax = np.atleast_1d(ax)
    for i, nm in enumerate(names):
        for w in np.unique(ex["window"]):
            s = ex["window"] == w
            first = w == ex["window"][0]
            ax[i].plot(
                ex["t"][s],
                ex["logged"][s, i],
                ".",
                color="black",
                ms=3,
                label="logged" if first else None,
            )
            ax[i].plot(
                ex["t"][s],
                ex["nominal"][s, i],
                color="tab:red",
                lw=0.9,
                label="nominal" if first else None,
            )
            ax[i].plot(
                ex["t"][s],
                ex["fitted"][s, i],
                color="tab:blue",
                lw=0.9,
                label="fitted" if first else None,
            )
        ax[i].set_ylabel(nm, fontsize=8)
    ax[0].legend(loc="upper right", fontsize=8, ncol=3)
    ax[-1].set_xlabel("s; each segment is an open-loop window started from the logged state")
    fig.tight_layout()
    return _save(fig, out / "fit_windows.png")


# ----------------------------------------------------------------------------- markdown


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, dict):
        return "; ".join(
            f"{k} {', '.join(_fmt(v, digits) for v in np.atleast_1d(val))}" for k, val in x.items()
        )
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def _gaps(g: dict | None) -> str:
    if not g:
        return "-"
    if not g["count"]:
        return "none"
    return f"{g['count']} (longest {g['max_ms']} ms; at {', '.join(str(t) for t in g['at_s'])} s)"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return out


def write_markdown(
    out: Path, s: dict[str, Any], figs: dict[str, str | None], cfg: dict[str, Any]
) -> Path:
    """report.md from the summary dict `s` (the JSON line) and the figure file names."""
    L: list[str] = [f"# Replay of `{s.get('log')}`", ""]
    if s.get("simulated"):
        L += [
            "This log was written by a simulation (`ppo_robot.evaluate log=...`), not by a robot.",
            "",
        ]
    if s.get("truncated"):
        L += [
            f"**The log is truncated** (the writer was killed): read up to the cut. {s.get('log_problem') or ''}",
            "",
        ]
    if s.get("missing"):
        L += ["## Missing", "", "What this report could not show, and why:", ""]
        L += [f"- {m}" for m in s["missing"]] + [""]

    L += _run_section(s, figs)
    L += _policy_section(s)
    L += _sim_section(s, figs, cfg)
    L += _fit_section(s, figs, cfg)
    L += [
        "## Render",
        "",
        str(s.get("render") if s.get("render") is not None else "not asked (render=true)"),
        "",
    ]
    if s.get("render_note"):
        L += [str(s["render_note"]), ""]
    p = out / "report.md"
    p.write_text("\n".join(L))
    return p


def _run_section(s: dict[str, Any], figs: dict[str, str | None]) -> list[str]:
    """## Run: the run's figures as a table, then the timing and timeline figures."""
    L: list[str] = []
    L += ["## Run", ""]
    rows = [
        ["robot", s.get("robot")],
        ["policy", s.get("policy_path")],
        ["source", s.get("source")],
        ["started", s.get("start_time")],
        ["ticks", s.get("ticks")],
        ["duration (s)", s.get("duration_s")],
        [
            "rate (Hz), configured / achieved",
            f"{_fmt(s.get('rate_hz'))} / {_fmt(s.get('achieved_rate_hz'))}",
        ],
        ["missed deadlines", s.get("missed_deadlines")],
        [
            "period error p50 / p99 / max (us)",
            "{} / {} / {}".format(
                *(
                    _fmt(s.get(k))
                    for k in ("period_error_p50_us", "period_error_p99_us", "period_error_max_us")
                )
            ),
        ],
        [
            "state age p50 / p99 (ms)",
            f"{_fmt(s.get('state_age_p50_ms'))} / {_fmt(s.get('state_age_p99_ms'))}",
        ],
        [
            "compute p50 / p99 (us)",
            f"{_fmt(s.get('compute_p50_us'))} / {_fmt(s.get('compute_p99_us'))}",
        ],
        ["commands limited by the safety layer", s.get("limited_ticks")],
        [
            "STATE intervals off the period by > 25 % (lost frames, a stalled controller)",
            _gaps(s.get("state_gaps")),
        ],
        [
            "faults",
            ", ".join(f"{f.get('kind')}: {f.get('message')}" for f in s.get("faults") or [])
            or "none",
        ],
        ["stopped by", s.get("stopped_by")],
        [
            "success (first episode, as deploy) / at the end of the run",
            f"{_fmt(s.get('success'))} / {_fmt(s.get('success_end'))}",
        ],
    ]
    L += _table(["", ""], rows) + [""]
    if s.get("success_note"):
        L += [f"Success not evaluated: {s['success_note']}.", ""]
    for key, cap in (("timing", "Timing"), ("timeline", "Events on a timeline")):
        if figs.get(key):
            L += [f"![{cap}]({figs[key]})", ""]
    return L


def _policy_section(s: dict[str, Any]) -> list[str]:
    """## Policy re-check."""
    L: list[str] = []
    L += ["## Policy re-check", ""]
    if s.get("policy_max_abs_diff") is not None:
        L += [
            f"The policy ({s.get('policy_recheck')}) was run again on the {s.get('policy_rechecked_ticks')} logged "
            f"observations: largest difference from the logged actions **{s['policy_max_abs_diff']:.3g}** "
            f"(command units; the deploy path must reproduce them to <= 1e-6).",
            "",
        ]
    else:
        L += ["Not done (see Missing).", ""]
    return L


def _sim_section(s: dict[str, Any], figs: dict[str, str | None], cfg: dict[str, Any]) -> list[str]:
    """## Simulation replay: how it was run, the per-sensor table, its figures."""
    L: list[str] = []
    L += ["## Simulation replay", ""]
    if s.get("sim_rmse"):
        tm = s.get("timing") or {}
        L += [
            f"The model (`{s.get('model_xml')}`{', reality ' + str(s.get('reality')) if s.get('reality') else ''}) "
            f"was started from the first logged STATE and driven open-loop by the logged commands at their "
            f"arrival times on the controller clock (clock mapping: {tm.get('method')}, offset "
            f"{_fmt(tm.get('offset_s'), 7)} s, uncertainty {_fmt(tm.get('window_ms'))} ms, drift "
            f"{_fmt(tm.get('drift_ppm'))} ppm; command latency {_fmt(s.get('latency_s'))} s). "
            f"An unstable system diverges open-loop after a while, so the RMSE is given over the whole run and "
            f"over the first {_fmt(cfg.get('rmse_horizon_s'))} s; the window RMSE restarts the simulation from the "
            f"logged state every {_fmt(cfg.get('window_s'))} s (multiple shooting: the model error without the "
            f"divergence). A sensor has diverged when the error first exceeds {_fmt(cfg.get('divergence_frac'))} of "
            f"its logged range.",
            "",
        ]
        names = list(s["sim_rmse"])
        rows = [
            [
                n,
                s["sim_rmse"][n],
                s["sim_rmse_first"][n],
                (s.get("sim_rmse_windows") or {}).get(n),
                s["correlation"][n],
                s["correlation_first"][n],
                s["time_to_divergence_s"][n],
                s["divergence_threshold"][n],
            ]
            for n in names
        ]
        L += _table(
            [
                "sensor",
                "RMSE",
                f"RMSE first {_fmt(cfg.get('rmse_horizon_s'))} s",
                "window RMSE",
                "corr",
                "corr first",
                "diverged at (s)",
                "threshold",
            ],
            rows,
        ) + [""]
        for key, cap in (("traces", "Logged and simulated traces"), ("error", "Replay error")):
            if figs.get(key):
                L += [f"![{cap}]({figs[key]})", ""]
    elif figs.get("traces"):
        L += [
            "Not done (see Missing); the logged traces:",
            "",
            f"![Logged traces]({figs['traces']})",
            "",
        ]
    else:
        L += ["Not done (see Missing).", ""]
    return L


def _fit_section(s: dict[str, Any], figs: dict[str, str | None], cfg: dict[str, Any]) -> list[str]:
    """## Model fit (where fit=[...] was asked)."""
    L: list[str] = []
    fit = s.get("fit")
    if fit:
        L += ["## Model fit", ""]
        L += [
            f"Fitted {', '.join(fit['params'])} on {fit['windows']} windows of {_fmt(fit['window_s'])} s from "
            f"{fit['logs']} log(s) ({fit['windows_skipped']} windows with irregular STATE timing left out), by "
            f"least squares on log-scale multipliers of the nominal values ({fit['evaluations']} model evaluations; "
            f"{fit['message']}).",
            "",
        ]
        rows = [[p, fit["values"][p], fit["nominal"].get(p)] for p in fit["params"]]
        L += _table(["parameter", "fitted multiplier (latency: s)", "nominal"], rows) + [""]
        if any(fit.get("timing_shift_ms") or []):
            L += [
                "Command timing was fitted inside each log's clock bracket too (shift from the "
                f"bracket's middle, ms: {', '.join(_fmt(x) for x in fit['timing_shift_ms'])}); the "
                "error before is the nominal model's with its best timing.",
                "",
            ]
        L += [
            f"Window error (normalized RMS, the objective): **{_fmt(fit['error_before'])} -> "
            f"{_fmt(fit['error_after'])}** ({_fmt(fit['reduction'], 3)}x lower).",
            "",
        ]
        rows = [[n, fit["rmse_before"][n], fit["rmse_after"][n]] for n in fit["rmse_before"]]
        L += _table(["sensor", "window RMSE nominal", "window RMSE fitted"], rows) + [""]
        if fit.get("rmse_first_after"):
            rows = [
                [n, (s.get("sim_rmse_first") or {}).get(n), fit["rmse_first_after"][n]]
                for n in fit["rmse_first_after"]
            ]
            L += _table(
                [
                    "sensor",
                    f"replay RMSE first {_fmt(cfg.get('rmse_horizon_s'))} s, nominal",
                    "fitted",
                ],
                rows,
            ) + [""]
        L += [
            f"Written: `{fit.get('fitted_reality')}` (a reality perturbation: `sim_robot reality=...`, "
            f"`ppo_robot.evaluate reality=...`, `replay reality=...`) and `{fit.get('suggested_randomization')}` "
            "(the default randomization ranges re-centred on the fitted values, for training).",
            "",
        ]
        if figs.get("fit"):
            L += ["![Fit windows](" + str(figs["fit"]) + ")", ""]
    return L
