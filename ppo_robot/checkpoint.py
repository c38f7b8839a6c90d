"""Checkpoint format: the actor (with its normalizer), the robot layout, the resolved
config and the trainer state, in one torch file written atomically.

`load_checkpoint` refuses a missing, corrupt or foreign file, or an unknown format version,
with a one-line UserError naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import torch

from ppo_robot.cli import UserError
from ppo_robot.networks import Actor

FORMAT = "ppo-robot-checkpoint"
FORMAT_VERSION = 1


def config_hash(cfg_dict: dict[str, Any]) -> str:
    blob = json.dumps(cfg_dict, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        rev = out.stdout.strip()
        if not rev:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def save_checkpoint(path, train_state, actor: Actor, cfg, cfg_dict, rand) -> None:
    from envs.make import robot_spec

    env = cfg.env
    robot = robot_spec(env).layout() if env.kind == "robot" else None
    p = cfg.ppo
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": {
            "obs_dim": actor.normalizer.mean.numel(),
            "act_dim": actor.log_std.numel(),
            "hidden": list(p.hidden),
            "activation": p.activation,
            "obs_clip": p.obs_clip,
        },
        "actor": actor.state_dict(),
        "robot": robot,
        "env": cfg_dict["env"],
        "randomization": cfg_dict.get("randomization"),
        "config": cfg_dict,
        "config_hash": config_hash(cfg_dict),
        "git_rev": git_revision(),
        "train": train_state,
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"checkpoint not found: {p}")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for a corrupt file
        raise UserError(
            f"checkpoint {p} is corrupt or not a checkpoint ({type(e).__name__})"
        ) from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise UserError(f"checkpoint {p} is not a ppo-robot checkpoint")
    if ck.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"checkpoint {p} has format version {ck.get('format_version')}, "
            f"this ppo-robot reads version {FORMAT_VERSION}"
        )
    return ck


def build_actor(ck: dict[str, Any]) -> Actor:
    m = ck["model"]
    actor = Actor(m["obs_dim"], m["act_dim"], m["hidden"], m["activation"], obs_clip=m["obs_clip"])
    actor.load_state_dict(ck["actor"])
    actor.eval()
    return actor


def check_robot_layout(path: str | Path, ck: dict[str, Any], spec) -> None:
    """A robot checkpoint fits `spec`, the installed robot (sensor/actuator layout, the
    observation, limits), else UserError in one line naming the checkpoint."""
    from envs.spec import RobotSpec

    if spec.layout_hash() != RobotSpec.hash_layout(ck["robot"]):
        raise UserError(
            f"checkpoint {path} was trained on another version of robot '{spec.name}' "
            "(sensor/actuator layout or limits differ from the installed spec)"
        )
