"""What a run under automatic domain randomization reports (`envs.adr_sampler`): the
ranges per parameter in metrics.csv and TensorBoard (`adr.<param>.low` / `.high`), and
`adr_ranges.json` next to the policy (the ranges it was trained against, the hard bounds,
the nominal values, how often an edge moved). Nothing for a run without."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _sampler(env: Any):
    return getattr(env, "adr", None)


def adr_fields(env: Any) -> list[str]:
    """metrics.csv columns for the env's adaptive ranges (none without ADR)."""
    adr = _sampler(env)
    if adr is None:
        return []
    return [f"adr.{n}.{side}" for n in adr.state.names for side in ("low", "high")]


def adr_row(env: Any) -> dict[str, float]:
    adr = _sampler(env)
    if adr is None:
        return {}
    s = adr.state
    row = {}
    for n, lo, hi in zip(s.names, s.low, s.high, strict=True):
        row[f"adr.{n}.low"], row[f"adr.{n}.high"] = float(lo), float(hi)
    return row


def adr_summary(env: Any) -> dict[str, Any] | None:
    """The ranges, their bounds and nominal values, the edges' moves; None without ADR."""
    adr = _sampler(env)
    if adr is None:
        return None
    params = {p.name: p for p in adr.state.config.params}
    return {
        "ranges": adr.state.ranges(),
        "bounds": {n: [p.lower, p.upper] for n, p in params.items()},
        "nominal": {n: p.nominal for n, p in params.items()},
        "widened": int(adr.widened),
        "narrowed": int(adr.narrowed),
    }


def write_ranges(env: Any, run_dir: Path) -> Path | None:
    """`adr_ranges.json` in `run_dir` (written whole, then renamed); None without ADR."""
    summary = adr_summary(env)
    if summary is None:
        return None
    path = Path(run_dir) / "adr_ranges.json"
    tmp = path.with_name(".adr_ranges.json.tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.replace(path)
    return path


def checkpoint_adr_state(ck: dict[str, Any]) -> dict[str, Any] | None:
    """The adaptive ranges' state (`AdrState.state_dict`) a checkpoint's training env had
    reached; None without ADR."""
    env_state = (ck.get("train") or {}).get("env_state") or {}
    adr = env_state.get("adr") if isinstance(env_state, dict) else None
    return adr["state"] if adr else None


def checkpoint_ranges(ck: dict[str, Any]) -> dict[str, list[float]] | None:
    """{param: [low, high]} a checkpoint's training env had reached; None without ADR."""
    s = checkpoint_adr_state(ck)
    if s is None:
        return None
    return {
        n: [float(a), float(b)] for n, a, b in zip(s["names"], s["low"], s["high"], strict=True)
    }
