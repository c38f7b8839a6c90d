"""`python -m export.onnx checkpoint=PATH output=PATH`: checkpoint -> deployable ONNX file.

The graph is the whole deterministic actor as the robot needs it (normalizer, MLP, mean
action, action mapping to command units, clipping to limits); the robot's layout, rate and
the training provenance travel in the file's metadata_props. Before the file is written the
graph passes onnx.checker, runs in onnxruntime, and matches the torch actor to `parity_tol`
on `parity_n` observations drawn from the normalizer statistics plus extreme ones; the file
is then written atomically. Ends with one JSON line (also saved as OUTPUT.json).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from export.config import ExportConfig
from ppo_robot.cli import UserError, run_app, typed_config, write_summary


def parity_observations(mean: np.ndarray, std: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n draws from N(mean, std) plus edge cases far outside the training distribution."""
    rng = np.random.default_rng(seed)
    d = mean.size
    typical = mean + std * rng.standard_normal((n, d))
    far = mean + std * rng.uniform(-1000, 1000, (256, d))
    edges = np.concatenate(
        [
            np.zeros((1, d)),
            np.full((1, d), 1e4),
            np.full((1, d), -1e4),
            mean[None],
            np.eye(d) * 1e3,
            -np.eye(d) * 1e3,
        ]
    )
    return np.concatenate([typical, far, edges]).astype(np.float32)


def export(raw: Any) -> dict[str, Any]:
    from ppo_robot.checkpoint import build_actor, load_checkpoint

    cfg: ExportConfig = typed_config(raw, ExportConfig)
    ck = load_checkpoint(cfg.checkpoint)
    out = _output_path(cfg)
    actor = build_actor(ck)
    spec = _robot_spec(cfg, ck)
    meta = _metadata(cfg, ck, spec)
    data, obs, diff, parity = _checked_model(cfg, actor, spec, meta)
    _write_bytes(out, data)
    from export.runtime import file_sha256

    summary = {
        "output": str(out),
        "robot": spec.name,
        "control_hz": spec.control_hz,
        "obs_dim": spec.obs_dim,
        "act_dim": spec.act_dim,
        "parity_max_abs_diff": diff,
        "parity_n_obs": len(obs),
        "bytes": len(data),
        "sha256": file_sha256(out),
        "checkpoint": str(cfg.checkpoint),
    }
    sidecar = {**summary, "metadata": {**meta, **parity}}
    _atomic_json(out.with_suffix(".json"), sidecar)
    write_summary(summary, None)
    return summary


def _output_path(cfg: ExportConfig) -> Path:
    """The .onnx path to write, its folder created and writable; UserError naming `output`."""
    out = Path(cfg.output)
    if out.suffix != ".onnx":
        raise UserError(f"output: {out} must end in .onnx")
    if out.exists() and out.is_dir():
        raise UserError(f"output: {out} is a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"output folder {out.parent} cannot be created ({e.strerror})") from None
    if not os.access(out.parent, os.W_OK):
        raise UserError(f"output folder {out.parent} is not writable")
    return out


def _robot_spec(cfg: ExportConfig, ck: dict[str, Any]):
    """The installed robot spec the checkpoint was trained on, its layout unchanged."""
    from envs.robots import get_robot
    from envs.spec import SpecError
    from ppo_robot.checkpoint import check_robot_layout

    if ck.get("robot") is None:
        raise UserError(
            f"checkpoint {cfg.checkpoint} is for the Gymnasium task '{ck['env']['name']}', "
            "which has no robot spec to deploy to; export takes robot checkpoints"
        )
    try:
        robot = ck["robot"]
        spec = get_robot(robot["name"], robot["control_hz"], robot.get("task"))
    except SpecError as e:
        raise UserError(str(e)) from None
    check_robot_layout(cfg.checkpoint, ck, spec)
    return spec


def _metadata(cfg: ExportConfig, ck: dict[str, Any], spec) -> dict[str, str]:
    """The file's metadata_props (all but the parity figures): the one place they are named."""
    from export.runtime import META_FORMAT, file_sha256
    from ppo_robot.checkpoint import git_revision

    return {
        "ppo_robot.format": META_FORMAT,
        "robot.name": spec.name,
        "robot.spec_version": str(spec.version),
        "robot.layout_hash": spec.layout_hash(),
        "robot.layout": json.dumps(spec.layout()),
        "robot.task": spec.task_name,
        "control_hz": repr(float(spec.control_hz)),
        "obs.names": json.dumps(list(spec.obs_names)),
        "obs.units": json.dumps(_obs_units(spec)),
        "sensors.names": json.dumps([s.name for s in spec.sensors]),
        "action.names": json.dumps([a.name for a in spec.actuators]),
        "action.units": json.dumps([a.unit for a in spec.actuators]),
        "action.offset": json.dumps(spec.action_offset.tolist()),
        "action.scale": json.dumps(spec.action_scale.tolist()),
        "action.low": json.dumps(spec.command_low.tolist()),
        "action.high": json.dumps(spec.command_high.tolist()),
        "action.kind": json.dumps([a.kind for a in spec.actuators]),
        "action.kp": json.dumps([a.kp for a in spec.actuators]),
        "action.kd": json.dumps([a.kd for a in spec.actuators]),
        "action.safe": json.dumps(spec.safe_command.tolist()),
        **_incremental_metadata(spec),
        **_adr_metadata(ck),
        "train.config_hash": ck["config_hash"],
        "train.git_rev": ck["git_rev"],
        "train.checkpoint_sha256": file_sha256(cfg.checkpoint),
        "train.steps": str(ck["train"]["step"]),
        "train.randomization": str((ck.get("randomization") or {}).get("name", "none")),
        "export.time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "export.git_rev": git_revision(),
    }


def _adr_metadata(ck: dict[str, Any]) -> dict[str, str]:
    """`train.adr_ranges`: the adaptive ranges the policy was trained against (absent
    without automatic domain randomization)."""
    from ppo_robot.adr_log import checkpoint_ranges

    ranges = checkpoint_ranges(ck)
    return {} if ranges is None else {"train.adr_ranges": json.dumps(ranges)}


def _incremental_metadata(spec) -> dict[str, str]:
    """An incremental map's step per tick and where the graph reads the last command
    (absent for an absolute map, so its files are as before)."""
    amap = spec.action_map
    if not amap.any_incremental:
        return {}
    return {
        "action.step": json.dumps(amap.step.tolist()),
        "action.last_obs": json.dumps(amap.last_obs.tolist()),
    }


def _torch_commands(cfg: ExportConfig, actor, spec) -> tuple[np.ndarray, np.ndarray]:
    """The parity observations and the torch actor's commands for them (in cfg.precision)."""
    import torch

    norm = actor.normalizer
    mean = norm.mean.numpy()
    std = np.sqrt(norm.var.numpy())
    obs = parity_observations(mean, std, int(cfg.parity_n), int(cfg.seed))
    with torch.no_grad():
        if cfg.precision == "float64":
            mu = actor.double()(torch.from_numpy(obs).double()).numpy()
            actor.float()
        else:
            mu = actor(torch.from_numpy(obs)).double().numpy()
    return obs, spec.command_for(obs, mu)


def _checked_model(cfg: ExportConfig, actor, spec, meta: dict[str, str]):
    """Parity: torch (the trained actor + the spec's mapping) vs onnxruntime. The final
    model's bytes (metadata + parity figures), checked and run once; the parity
    observations, the largest difference and the parity metadata."""
    import onnx
    import onnxruntime as ort

    from export.graph import build_graph

    obs, expected = _torch_commands(cfg, actor, spec)

    def _build(extra: dict[str, str]) -> onnx.ModelProto:
        return build_graph(actor, spec.action_map, {**meta, **extra}, cfg.precision)

    model = _build({})
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(["action"], {"obs": obs})[0]
    diff = float(np.max(np.abs(got.astype(np.float64) - expected)))
    parity = {
        "parity.precision": cfg.precision,
        "parity.max_abs_diff": repr(diff),
        "parity.n_obs": str(len(obs)),
        "parity.tol": repr(float(cfg.parity_tol)),
    }
    print(
        f"parity: max |onnx - torch| = {diff:.3g} over {len(obs)} observations (tol {cfg.parity_tol:g})",
        flush=True,
    )
    if not diff <= cfg.parity_tol:
        raise UserError(
            f"parity check failed: max |onnx - torch| = {diff:.3g} > parity_tol={cfg.parity_tol:g}; nothing written"
        )
    model = _build(parity)
    onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString()
    ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(["action"], {"obs": obs[:1]})
    return data, obs, diff, parity


def _write_bytes(out: Path, data: bytes) -> None:
    """Write the model atomically (a temporary file beside it, then rename)."""
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"output {out}: cannot write ({e.strerror})") from None


def _atomic_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def _obs_units(spec) -> list[str]:
    units = {s.name: s.unit for s in spec.sensors}
    return [units.get(n, "1") for n in spec.obs_names]


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    run_app("export", export, ExportConfig)


if __name__ == "__main__":
    main()
