"""Domain randomization: data (configs/randomization/<robot>/*.yaml) plus a pure sampling function.

A config names `MjModel` fields and the bodies, joints, geoms or actuators they apply to
(by name or glob pattern), an operation (scale, add, set) and a distribution (uniform,
log_uniform, normal with bounds, fixed). Besides model fields it describes what happens
around the model: control latency, action noise, observation noise, per-episode sensor
bias, encoder resolution, a tilted table (gravity direction) and random pushes.

The same schema with `fixed` values describes one "reality" (a point perturbation), which
`firmware_bridge.sim_robot reality=PATH` and `ppo_robot.evaluate reality=PATH` take.

Sampling is `sample(nominal, rng) -> Perturbation`; applying writes a Perturbation into one
env's own MjModel copy. The nominal model is never changed.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
import yaml

from envs.adr import AdrConfig, AdrError, check_names, parse_adr
from ppo_robot.paths import find_config_file


class RandomizationError(ValueError):
    """A randomization or reality config that cannot be applied."""


DISTS = ("uniform", "log_uniform", "normal", "fixed")
OPS = ("scale", "add", "set")

# MjModel field prefix -> the object whose names select rows.
_PREFIX_OBJ = {
    "body_": mujoco.mjtObj.mjOBJ_BODY,
    "geom_": mujoco.mjtObj.mjOBJ_GEOM,
    "jnt_": mujoco.mjtObj.mjOBJ_JOINT,
    "dof_": mujoco.mjtObj.mjOBJ_JOINT,  # rows by the joint's dofs
    "actuator_": mujoco.mjtObj.mjOBJ_ACTUATOR,
    "site_": mujoco.mjtObj.mjOBJ_SITE,
    "tendon_": mujoco.mjtObj.mjOBJ_TENDON,
}
_NAME_COUNT = {
    mujoco.mjtObj.mjOBJ_BODY: "nbody",
    mujoco.mjtObj.mjOBJ_GEOM: "ngeom",
    mujoco.mjtObj.mjOBJ_JOINT: "njnt",
    mujoco.mjtObj.mjOBJ_ACTUATOR: "nu",
    mujoco.mjtObj.mjOBJ_SITE: "nsite",
    mujoco.mjtObj.mjOBJ_TENDON: "ntendon",
}


@dataclass(frozen=True)
class Dist:
    """A scalar distribution."""

    kind: str = "fixed"
    low: float = 0.0
    high: float = 0.0
    mean: float = 0.0
    std: float = 0.0
    value: float = 0.0

    def sample(self, rng: np.random.Generator, size: Any = None) -> np.ndarray:
        if self.kind == "fixed":
            return np.full(size if size is not None else (), self.value, dtype=np.float64)
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high, size)
        if self.kind == "log_uniform":
            return np.exp(rng.uniform(np.log(self.low), np.log(self.high), size))
        # normal, truncated to [low, high] by clipping
        return np.clip(rng.normal(self.mean, self.std, size), self.low, self.high)

    @property
    def bounds(self) -> tuple[float, float]:
        if self.kind == "fixed":
            return (self.value, self.value)
        return (self.low, self.high)


def parse_dist(where: str, d: Any) -> Dist:
    """A number (fixed) or a mapping {dist, low, high, mean, std, value}."""
    if isinstance(d, int | float) and not isinstance(d, bool):
        return Dist("fixed", value=float(d))
    if not isinstance(d, dict):
        raise RandomizationError(f"{where}: expected a number or a mapping, got {d!r}")
    allowed = {"dist", "low", "high", "mean", "std", "value"}
    extra = set(d) - allowed
    if extra:
        raise RandomizationError(f"{where}: unknown key '{sorted(extra)[0]}'")
    kind = d.get("dist", "fixed" if "value" in d else "uniform")
    if kind not in DISTS:
        raise RandomizationError(f"{where}.dist: unknown distribution '{kind}' (one of {DISTS})")
    try:
        vals = {k: float(d[k]) for k in ("low", "high", "mean", "std", "value") if k in d}
    except (TypeError, ValueError):
        raise RandomizationError(f"{where}: bounds must be numbers") from None
    if kind == "fixed":
        if "value" not in vals:
            raise RandomizationError(f"{where}: 'fixed' needs 'value'")
        return Dist("fixed", value=vals["value"])
    if "low" not in vals or "high" not in vals:
        raise RandomizationError(f"{where}: '{kind}' needs 'low' and 'high'")
    if vals["low"] > vals["high"]:
        raise RandomizationError(f"{where}: low {vals['low']} > high {vals['high']}")
    if kind == "log_uniform" and vals["low"] <= 0:
        raise RandomizationError(f"{where}: log_uniform needs low > 0")
    if kind == "normal" and ("std" not in vals or vals["std"] < 0):
        raise RandomizationError(f"{where}: 'normal' needs std >= 0")
    return Dist(
        kind,
        low=vals["low"],
        high=vals["high"],
        mean=vals.get("mean", 0.5 * (vals["low"] + vals["high"])),
        std=vals.get("std", 0.0),
    )


@dataclass(frozen=True)
class FieldRange:
    """One MjModel field perturbed on selected rows."""

    key: str
    field: str
    targets: tuple[str, ...]
    op: str
    dist: Dist
    index: tuple[int, ...] | None = None
    """Columns of a 2-D field (e.g. actuator_gainprm column 0); None = all."""
    same_as: str | None = None
    """Key of an earlier param whose draw this one reuses (a position servo's kp sits in
    actuator_gainprm[0] and -kp in actuator_biasprm[1]: one gain, two fields)."""


@dataclass(frozen=True)
class Randomization:
    """A parsed randomization (or reality) config."""

    fields: tuple[FieldRange, ...] = ()
    latency_s: Dist | None = None
    action_noise_std: float = 0.0
    obs_noise_std: dict[str, float] = field(default_factory=dict)
    sensor_bias: dict[str, Dist] = field(default_factory=dict)
    resolution_scale: Dist | None = None
    gravity_tilt_rad: Dist | None = None
    push_prob: float = 0.0
    push_force: float = 0.0
    push_body: str = ""
    adaptive: AdrConfig | None = None
    """Automatic domain randomization of some of the parameters (`envs.adr`); their own
    distributions above are then unused (the ranges start at the nominal and adapt)."""

    @property
    def is_empty(self) -> bool:
        return self == Randomization()


_TOP_KEYS = {
    "params",
    "latency_s",
    "action_noise_std",
    "obs_noise_std",
    "sensor_bias",
    "resolution_scale",
    "gravity_tilt_rad",
    "push",
    "name",
    "description",
    "adaptive",
}


def parse(cfg: Any, where: str = "randomization") -> Randomization:
    """Parse a plain mapping (from YAML or an OmegaConf container) into a Randomization."""
    if cfg is None:
        return Randomization()
    if not isinstance(cfg, dict):
        raise RandomizationError(f"{where}: expected a mapping")
    extra = set(cfg) - _TOP_KEYS
    if extra:
        raise RandomizationError(f"{where}: unknown key '{sorted(extra)[0]}'")
    adaptive = _adaptive(cfg, where)
    fields: list[FieldRange] = []
    for key, p in (cfg.get("params") or {}).items():
        if p is not None:  # None: removed by an override (randomization.params.X=null)
            fields.append(_param(str(key), p, f"{where}.params.{key}", fields, adaptive))
    push = cfg.get("push") or {}
    extra = set(push) - {"prob", "force", "body"}
    if extra:
        raise RandomizationError(f"{where}.push: unknown key '{sorted(extra)[0]}'")

    def _opt(k: str) -> Dist | None:
        return parse_dist(f"{where}.{k}", cfg[k]) if cfg.get(k) is not None else None

    def _nonneg(k: str, v: Any) -> float:
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise RandomizationError(f"{where}.{k}: expected a number, got {v!r}") from None
        if f < 0:
            raise RandomizationError(f"{where}.{k}: must be >= 0, got {f}")
        return f

    latency = _opt("latency_s")
    _check_adaptive(adaptive, fields, latency, where)
    return Randomization(
        fields=tuple(fields),
        latency_s=latency,
        action_noise_std=_nonneg("action_noise_std", cfg.get("action_noise_std", 0.0) or 0.0),
        obs_noise_std={
            str(k): _nonneg(f"obs_noise_std.{k}", v)
            for k, v in (cfg.get("obs_noise_std") or {}).items()
        },
        sensor_bias={
            str(k): parse_dist(f"{where}.sensor_bias.{k}", v)
            for k, v in (cfg.get("sensor_bias") or {}).items()
        },
        resolution_scale=_opt("resolution_scale"),
        gravity_tilt_rad=_opt("gravity_tilt_rad"),
        push_prob=_nonneg("push.prob", push.get("prob", 0.0)),
        push_force=_nonneg("push.force", push.get("force", 0.0)),
        push_body=str(push.get("body", "")),
        adaptive=adaptive,
    )


def _adaptive(cfg: dict, where: str) -> AdrConfig | None:
    """The `adaptive:` section, parsed (`envs.adr.parse_adr`), or None."""
    if cfg.get("adaptive") is None:
        return None
    try:
        return parse_adr(cfg["adaptive"], f"{where}.adaptive")
    except AdrError as e:
        raise RandomizationError(str(e)) from None


def _check_adaptive(
    adaptive: AdrConfig | None, fields: list[FieldRange], latency: Dist | None, where: str
) -> None:
    """Every adaptive parameter is a `params` entry of its own draw or `latency_s`."""
    if adaptive is not None:
        own = {f.key for f in fields if f.same_as is None} | ({"latency_s"} if latency else set())
        try:
            check_names(adaptive, own, f"{where}.adaptive")
        except AdrError as e:
            raise RandomizationError(str(e)) from None


_PARAM_KEYS = {
    "field",
    "targets",
    "op",
    "index",
    "dist",
    "low",
    "high",
    "mean",
    "std",
    "value",
    "source",
    "same_as",
}


def _param(
    key: str, p: Any, w: str, earlier: list[FieldRange], adaptive: AdrConfig | None = None
) -> FieldRange:
    """One entry of `params` (`w`: where it is, for messages); `earlier`: those before it
    (a `same_as` names one of them); an adaptive one needs no distribution (its nominal)."""
    if not isinstance(p, dict):
        raise RandomizationError(f"{w}: expected a mapping")
    extra = set(p) - _PARAM_KEYS
    if extra:
        raise RandomizationError(f"{w}: unknown key '{sorted(extra)[0]}'")
    if "field" not in p:
        raise RandomizationError(f"{w}: missing 'field'")
    op = p.get("op", "scale")
    if op not in OPS:
        raise RandomizationError(f"{w}.op: unknown operation '{op}' (one of {OPS})")
    targets = p.get("targets", ["*"])
    targets = (targets,) if isinstance(targets, str) else tuple(str(t) for t in targets)
    index = p.get("index")
    index = None if index is None else tuple(int(i) for i in np.atleast_1d(index))
    dist_keys = {k: p[k] for k in ("dist", "low", "high", "mean", "std", "value") if k in p}
    same_as = p.get("same_as")
    nominal = {a.name: a.nominal for a in (adaptive.params if adaptive else ())}
    if same_as is None and key in nominal and not dist_keys:
        dist_keys = {"value": nominal[key]}
    if same_as is None:
        return FieldRange(key, str(p["field"]), targets, op, parse_dist(w, dist_keys), index)
    if str(same_as) not in {f.key for f in earlier}:
        raise RandomizationError(f"{w}.same_as: no earlier param '{same_as}'")
    if dist_keys:
        raise RandomizationError(
            f"{w}: same_as reuses '{same_as}''s draw, drop '{sorted(dist_keys)[0]}'"
        )
    return FieldRange(key, str(p["field"]), targets, op, Dist(), index, str(same_as))


def load(path: str | Path, robot: str | None = None) -> Randomization:
    """Read a randomization or reality YAML file: `path` where it exists, else the file it
    names in the configs (`configs/realities/furuta/x.yaml`, `x`, `x.yaml`: a packaged
    reality of `robot`, or of the one robot that has it)."""
    p = find_config_file(path, "realities", robot)
    if p is None:
        raise RandomizationError(f"reality/randomization file not found: {Path(path)}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise RandomizationError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    return parse(data, where=str(p))


# -------------------------------------------------------------------- binding to a model


@dataclass
class _BoundField:
    rng: FieldRange
    attr: str
    rows: np.ndarray
    cols: np.ndarray | slice
    nominal: np.ndarray


@dataclass
class Perturbation:
    """Sampled values for one env (one episode): what `apply` writes into its model."""

    fields: list[np.ndarray]
    latency_s: float = 0.0
    sensor_bias: np.ndarray | None = None
    resolution_scale: float = 1.0
    gravity: np.ndarray | None = None


class Binder:
    """A Randomization resolved against a nominal model and a robot's sensor layout.

    Name lookups happen once here; `sample` and `apply` are then plain array work.
    """

    def __init__(
        self,
        rand: Randomization,
        model: mujoco.MjModel,
        sensor_names: tuple[str, ...] = (),
    ) -> None:
        self.rand = rand
        self.bound: list[_BoundField] = [self._bind(f, model) for f in rand.fields]
        shape = {b.rng.key: b.nominal.shape for b in self.bound}
        for b in self.bound:
            if b.rng.same_as is not None and shape[b.rng.same_as] != b.nominal.shape:
                raise RandomizationError(
                    f"randomization.params.{b.rng.key}.same_as: '{b.rng.same_as}' perturbs "
                    f"{shape[b.rng.same_as]} values, this one {b.nominal.shape}"
                )
        self.nominal_gravity = np.array(model.opt.gravity, dtype=np.float64)
        names = list(sensor_names)
        for k in list(rand.obs_noise_std) + list(rand.sensor_bias):
            if k not in names:
                raise RandomizationError(f"randomization: unknown sensor '{k}' (robot has {names})")
        self.obs_noise_std = np.array([rand.obs_noise_std.get(n, 0.0) for n in names])
        self.bias_dists = [rand.sensor_bias.get(n) for n in names]
        self.push_body = -1
        if rand.push_prob > 0:
            self.push_body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, rand.push_body)
            if self.push_body < 0:
                raise RandomizationError(
                    f"randomization.push.body: unknown body '{rand.push_body}'"
                )

    @staticmethod
    def _bind(f: FieldRange, model: mujoco.MjModel) -> _BoundField:
        where = f"randomization.params.{f.key}"
        if not hasattr(model, f.field) or not isinstance(getattr(model, f.field), np.ndarray):
            raise RandomizationError(f"{where}.field: unknown MjModel field '{f.field}'")
        obj = next((o for p, o in _PREFIX_OBJ.items() if f.field.startswith(p)), None)
        if obj is None:
            raise RandomizationError(
                f"{where}.field: '{f.field}' is not a per-body/geom/joint/dof/actuator field"
            )
        count = getattr(model, _NAME_COUNT[obj])
        names = [mujoco.mj_id2name(model, obj, i) or "" for i in range(count)]
        ids = [i for i, n in enumerate(names) if any(fnmatch.fnmatchcase(n, t) for t in f.targets)]
        if not ids:
            kind = str(obj).split("_")[-1].lower()
            raise RandomizationError(
                f"{where}.targets: no {kind} named {list(f.targets)} in the model"
            )
        if f.field.startswith("dof_"):
            rows = np.concatenate(
                [
                    np.arange(model.jnt_dofadr[j], model.jnt_dofadr[j] + _jnt_ndof(model, j))
                    for j in ids
                ]
            )
        else:
            rows = np.array(ids)
        arr = getattr(model, f.field)
        cols: np.ndarray | slice = slice(None)
        if f.index is not None:
            if arr.ndim != 2 or max(f.index) >= arr.shape[1]:
                raise RandomizationError(
                    f"{where}.index: {list(f.index)} out of range for {f.field}"
                )
            cols = np.array(f.index)
        nominal = np.array(arr[rows][:, cols] if arr.ndim == 2 else arr[rows], dtype=np.float64)
        return _BoundField(f, f.field, rows, cols, nominal)

    def sample(
        self, rng: np.random.Generator, dists: dict[str, Dist] | None = None
    ) -> Perturbation:
        """A pure function of the nominal model and the generator; `dists` replaces some
        parameters' distributions (by key, `latency_s` included: adaptive ranges)."""
        vals, draws = [], {}
        dists = dists or {}
        for b in self.bound:
            if b.rng.same_as is None:
                d = dists.get(b.rng.key, b.rng.dist)
                s = draws[b.rng.key] = d.sample(rng, b.nominal.shape)
            else:
                s = draws[b.rng.same_as]
            if b.rng.op == "scale":
                vals.append(b.nominal * s)
            elif b.rng.op == "add":
                vals.append(b.nominal + s)
            else:
                vals.append(s)
        r = self.rand
        lat = dists.get("latency_s", r.latency_s)
        latency = float(lat.sample(rng)) if lat else 0.0
        bias = None
        if any(d is not None for d in self.bias_dists):
            bias = np.array([float(d.sample(rng)) if d else 0.0 for d in self.bias_dists])
        res = float(r.resolution_scale.sample(rng)) if r.resolution_scale else 1.0
        gravity = None
        if r.gravity_tilt_rad is not None:
            tilt = float(r.gravity_tilt_rad.sample(rng))
            axis_angle = rng.uniform(0, 2 * np.pi)
            gravity = _tilt(self.nominal_gravity, tilt, axis_angle)
        return Perturbation(vals, max(0.0, latency), bias, max(res, 0.0), gravity)

    def apply(self, model: mujoco.MjModel, p: Perturbation) -> None:
        """Write a perturbation into one env's own model copy."""
        for b, v in zip(self.bound, p.fields, strict=True):
            write_field(model, b, v)
        model.opt.gravity[:] = self.nominal_gravity if p.gravity is None else p.gravity

    def restore(self, model: mujoco.MjModel) -> None:
        for b in self.bound:
            write_field(model, b, b.nominal)
        model.opt.gravity[:] = self.nominal_gravity


def write_field(model: mujoco.MjModel, b: _BoundField, values: np.ndarray) -> None:
    """Write values into the bound rows (and columns) of one model's field."""
    arr = getattr(model, b.attr)
    if arr.ndim == 2:
        sub = arr[b.rows]
        sub[:, b.cols] = values
        arr[b.rows] = sub
    else:
        arr[b.rows] = values


def _jnt_ndof(model: mujoco.MjModel, j: int) -> int:
    return {0: 6, 1: 3, 2: 1, 3: 1}[int(model.jnt_type[j])]


def _tilt(g: np.ndarray, angle: float, azimuth: float) -> np.ndarray:
    """Rotate gravity by `angle` about a horizontal axis at `azimuth`."""
    axis = np.array([np.cos(azimuth), np.sin(azimuth), 0.0])
    c, s = np.cos(angle), np.sin(angle)
    return g * c + np.cross(axis, g) * s + axis * np.dot(axis, g) * (1 - c)


def apply_reality(
    rand: Randomization, model: mujoco.MjModel, sensor_names: tuple[str, ...], seed: int = 0
) -> tuple[Binder, Perturbation]:
    """Bind, sample once and apply: a reality perturbation on a model (in place)."""
    binder = Binder(rand, model, sensor_names)
    p = binder.sample(np.random.default_rng(seed))
    binder.apply(model, p)
    return binder, p
