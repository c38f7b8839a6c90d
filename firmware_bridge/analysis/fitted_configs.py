"""A fit's result as randomization configs (the schema of `envs.randomization`):
`fitted_reality` (the fitted values as a fixed reality perturbation, for `sim_robot`,
`ppo_robot.evaluate` and `replay reality=...`) and `suggested_randomization` (the robot's
default ranges re-centred on the fitted values, to train the next policy on).

Pure functions of the `sysid.FitResult`, the nominal model and the default randomization
file; `firmware_bridge.analysis.replay_fit` writes them next to the replay report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from firmware_bridge.analysis.replay_sections import Skip
from ppo_robot.paths import config_dir

Atom = tuple[str, str, int | None]
"""One randomized value: (model field, object name, column or None for the whole row)."""


def default_randomization(robot: str) -> Path:
    """The robot's `default` randomization (configs/randomization/<robot>/default.yaml)."""
    from ppo_robot.paths import robot_option

    return (
        config_dir() / "randomization" / f"{robot_option('randomization', 'default', robot)}.yaml"
    )


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

    base = yaml.safe_load(base_path.read_text()) or {}
    fitted = _fitted_atoms(res, model)
    used: set[Atom] = set()
    out_params: dict[str, Any] = {}
    for key, p in dict(base.get("params") or {}).items():
        out_params.update(_recentred(key, p, model, fitted, used))
    _add_unranged_fits(res, model, used, out_params)
    out = dict(base)
    out["name"] = "suggested"
    out["params"] = out_params
    if res.latency_s is not None and isinstance(base.get("latency_s"), dict):
        out["latency_s"] = _recentred_latency(base["latency_s"], res.latency_s)
    try:
        parse(out, "suggested_randomization")
    except RandomizationError as e:  # pragma: no cover - a bug here, not bad input
        raise Skip(f"suggested randomization does not parse: {e}") from None
    return out


def _fitted_atoms(res, model) -> dict[Atom, float]:
    """Every value a fitted parameter scales, with its fitted multiplier."""
    atoms: dict[Atom, float] = {}
    for name in res.params:
        for e in res.entries[name]:
            for tgt in _expand(model, e):
                for col in e.index or (None,):
                    atoms[(e.field, tgt, col)] = res.values[name]
    return atoms


def _entry(key: str, p: dict[str, Any]):
    """A default range's field, targets and columns as a `sysid.Entry`."""
    from firmware_bridge.analysis.sysid import Entry

    return Entry(
        key,
        str(p["field"]),
        tuple(p.get("targets", ["*"]))
        if not isinstance(p.get("targets"), str)
        else (p["targets"],),
        tuple(p["index"]) if p.get("index") is not None else None,
    )


def _recentred(
    key: str, p: Any, model, fitted: dict[Atom, float], used: set[Atom]
) -> dict[str, Any]:
    """One default range, re-centred: as it is where no fitted parameter covers it, scaled
    where one multiplier covers all its objects, else split into one range per object.
    The fitted values it covers are added to `used`."""
    if not isinstance(p, dict) or p.get("op", "scale") != "scale":
        return {key: p}
    e = _entry(key, p)
    groups: dict[float | None, list[str]] = {}  # multiplier (None: not fitted) -> objects
    for tgt in _expand(model, e):
        mults = {fitted.get((e.field, tgt, c)) for c in (e.index or (None,))}
        for c in e.index or (None,):
            if (e.field, tgt, c) in fitted:
                used.add((e.field, tgt, c))
        m = mults.pop() if len(mults) == 1 else None
        groups.setdefault(m, []).append(tgt)
    if set(groups) == {None}:
        return {key: p}
    if len(groups) == 1:
        return {key: _scaled(p, next(iter(groups)))}
    out: dict[str, Any] = {}
    for m, tgts in groups.items():
        for tgt in tgts:
            q = dict(p, targets=[tgt])
            out[f"{key}_{tgt}"] = _scaled(q, m) if m is not None else q
    return out


def _add_unranged_fits(res, model, used: set[Atom], out_params: dict[str, Any]) -> None:
    """Fitted entries the default does not randomize: a range of x0.8..x1.25 around the
    fitted value, under the entry's key (or `<key>_fitted` where that key is taken)."""
    for name in res.params:
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


def _recentred_latency(base: dict[str, Any], fitted: float) -> dict[str, Any]:
    """The default latency range, its width kept, centred on the fitted latency (>= 0)."""
    lo, hi = float(base.get("low", 0.0)), float(base.get("high", 0.0))
    half = 0.5 * (hi - lo)
    return {
        "dist": base.get("dist", "uniform"),
        "low": round(max(0.0, fitted - half), 6),
        "high": round(fitted + half, 6),
    }


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
    """A range multiplied by `m`, its source saying what it was."""
    q = dict(p)
    for k in ("low", "high", "mean", "std", "value"):
        if k in q and isinstance(q[k], int | float):
            q[k] = round(float(q[k]) * m, 6)
    was = f"{p.get('low')}..{p.get('high')}" if "low" in p else str(p.get("value"))
    q["source"] = f"re-centred on the fitted x{m:.4g} (default {was})"
    return q
