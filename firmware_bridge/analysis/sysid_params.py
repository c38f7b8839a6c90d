"""What the fit can change: named parameters (multipliers of nominal MjModel fields on named
objects, or the command latency), bound to a model's rows and written into copies of it.

Analysis floor. A parameter's entries are in the randomization schema's terms
(`envs.randomization`), so a fit's result reads as a reality or a randomization config.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import mujoco
import numpy as np

from firmware_bridge.analysis.sysid_trace import ReplayError


@dataclass(frozen=True)
class Entry:
    """One MjModel field on named objects, in the randomization schema's terms."""

    key: str
    field: str
    targets: tuple[str, ...]
    index: tuple[int, ...] | None = None


@dataclass(frozen=True)
class FitParam:
    """A fitted quantity: a multiplier of nominal model values (log-scale), or latency."""

    name: str
    entries: tuple[Entry, ...] = ()
    doc: str = ""

    @property
    def is_latency(self) -> bool:
        return not self.entries


def _names(model: mujoco.MjModel, obj: int, count: int) -> list[str]:
    return [mujoco.mj_id2name(model, obj, i) or "" for i in range(count)]


def fit_params(model: mujoco.MjModel) -> dict[str, FitParam]:
    """The parameters `fit=[...]` knows for a model, derived from its names:

    damping / coulomb / armature: the field on every 1-dof joint; <joint>_damping etc. on one
    joint (a '_joint' suffix dropped: arm_joint -> arm_damping); <body>_mass; <actuator>_gain
    and `gain` (every actuator's, one multiplier: `_gain_entries`), back_emf (biasprm[2]
    alone); latency (command latency, seconds).
    """
    J = mujoco.mjtObj.mjOBJ_JOINT
    joints = [
        n
        for j, n in enumerate(_names(model, J, model.njnt))
        if n
        and int(model.jnt_type[j])
        in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))
    ]
    out: dict[str, FitParam] = {}
    fields = {"damping": "dof_damping", "coulomb": "dof_frictionloss", "armature": "dof_armature"}
    for short, f in fields.items():
        out[short] = FitParam(short, (Entry(short, f, tuple(joints)),), f"{f} on all joints")
        for j in joints:
            base = j[: -len("_joint")] if j.endswith("_joint") else j
            name = f"{base}_{short}"
            out[name] = FitParam(name, (Entry(name, f, (j,)),), f"{f} on {j}")
    for b in _names(model, mujoco.mjtObj.mjOBJ_BODY, model.nbody)[1:]:
        if b:
            out[f"{b}_mass"] = FitParam(
                f"{b}_mass", (Entry(f"{b}_mass", "body_mass", (b,)),), f"body_mass of {b}"
            )
    acts = [a for a in _names(model, mujoco.mjtObj.mjOBJ_ACTUATOR, model.nu) if a]
    for a in acts:
        out[f"{a}_gain"] = FitParam(
            f"{a}_gain", _gain_entries(model, f"{a}_gain", (a,)), f"the gain of actuator {a}"
        )
    if acts:
        out["gain"] = FitParam("gain", _gain_entries(model, "gain", tuple(acts)), "every gain")
        out["back_emf"] = FitParam(
            "back_emf",
            (Entry("back_emf", "actuator_biasprm", tuple(acts), (2,)),),
            "actuator_biasprm[2]",
        )
    out["latency"] = FitParam("latency", (), "command latency (s)")
    return out


def _is_position(model: mujoco.MjModel, a: int) -> bool:
    """A MuJoCo position actuator: force = kp (ctrl - q) - kv qdot, i.e. biasprm[1] = -kp."""
    kp = float(model.actuator_gainprm[a, 0])
    return kp != 0.0 and float(model.actuator_biasprm[a, 1]) == -kp


def _gain_entries(model: mujoco.MjModel, key: str, acts: tuple[str, ...]) -> tuple[Entry, ...]:
    """What an actuator's gain scales: gainprm[0] and the bias term that is the same gain,
    biasprm[1] (-kp) of a position servo, biasprm[2] of a DC motor (its back-EMF, kt/Rm
    like the gain: a weaker motor is weaker in both). Position servos and the rest are
    separate entries where `acts` holds both."""
    ids = {n: i for i, n in enumerate(_names(model, mujoco.mjtObj.mjOBJ_ACTUATOR, model.nu))}
    servos = tuple(a for a in acts if _is_position(model, ids[a]))
    others = tuple(a for a in acts if a not in servos)
    out: list[Entry] = []
    for group, col, tag in ((servos, 1, "servo"), (others, 2, "motor")):
        if group:
            sub = key if not (servos and others) else f"{key}_{tag}"
            out.append(Entry(sub, "actuator_gainprm", group, (0,)))
            stem = sub[: -len("_gain")] if sub.endswith("_gain") else sub
            bias = f"{sub}_bias" if col == 1 else f"{stem}_back_emf"
            out.append(Entry(bias, "actuator_biasprm", group, (col,)))
    return tuple(out)


@dataclass
class BoundEntry:
    """An entry bound to one model: the field, its rows (and columns) and their nominal values."""

    attr: str
    rows: np.ndarray
    cols: np.ndarray | None
    nominal: np.ndarray


def bind_entry(model: mujoco.MjModel, e: Entry) -> BoundEntry | None:
    """Rows/cols of an entry with non-zero nominal values (a multiplier of 0 fits nothing)."""
    from envs.randomization import _NAME_COUNT, _PREFIX_OBJ, _jnt_ndof

    obj = next(o for p, o in _PREFIX_OBJ.items() if e.field.startswith(p))
    names = _names(model, obj, getattr(model, _NAME_COUNT[obj]))
    ids = [i for i, n in enumerate(names) if any(fnmatch.fnmatchcase(n, t) for t in e.targets)]
    if e.field.startswith("dof_"):
        rows = (
            np.concatenate(
                [
                    np.arange(model.jnt_dofadr[j], model.jnt_dofadr[j] + _jnt_ndof(model, j))
                    for j in ids
                ]
            )
            if ids
            else np.zeros(0, int)
        )
    else:
        rows = np.array(ids, dtype=int)
    arr = getattr(model, e.field)
    cols = None if e.index is None else np.array(e.index)
    nom = arr[rows][:, cols] if cols is not None else arr[rows]
    nz = np.any(np.atleast_2d(nom.reshape(rows.size, -1)) != 0, axis=1) if rows.size else rows
    rows = rows[nz] if rows.size else rows
    if rows.size == 0:
        return None
    nom = arr[rows][:, cols] if cols is not None else arr[rows]
    return BoundEntry(e.field, rows, cols, np.array(nom, dtype=np.float64))


def scale_entry(model: mujoco.MjModel, b: BoundEntry, mult: float) -> None:
    """Write `mult` times the nominal values into `model`'s bound rows (in place)."""
    arr = getattr(model, b.attr)
    if b.cols is None:
        arr[b.rows] = b.nominal * mult
    else:
        sub = arr[b.rows]
        sub[:, b.cols] = b.nominal * mult
        arr[b.rows] = sub


def resolve_params(model: mujoco.MjModel, names: list[str]) -> list[FitParam]:
    """The FitParams named by `fit=[...]`; raises ReplayError for an unknown, zero or repeated one."""
    known = fit_params(model)
    out = []
    for n in names:
        if n not in known:
            raise ReplayError(
                f"fit: unknown parameter '{n}' (known for this model: {sorted(known)})"
            )
        p = known[n]
        if not p.is_latency and all(bind_entry(model, e) is None for e in p.entries):
            raise ReplayError(f"fit: parameter '{n}' is 0 in the model; a multiplier cannot fit it")
        out.append(p)
    if len({p.name for p in out}) != len(out):
        raise ReplayError("fit: a parameter is named twice")
    return out


def copy_model(m: mujoco.MjModel) -> mujoco.MjModel:
    """A copy of `m` to write fitted values into (the nominal model is never changed)."""
    import copy

    return copy.copy(m)
