"""Policy re-check for `firmware_bridge.replay`: the policy named in the log run again on
the logged observations, one at a time as the deploy loop ran it, and the largest
difference from the logged actions (the deploy path: <= 1e-6). A deploy log names its ONNX
file (its sha256 checked); a simulated log its checkpoint (the actor's hash checked).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from firmware_bridge.analysis.replay_sections import Skip
from ppo_robot.cli import UserError


def policy_recheck(cfg, run, data, spec) -> dict[str, Any]:
    """The logged policy (ONNX) or actor (checkpoint) on the logged observations: the
    largest difference from the logged actions, and which kind was re-run."""
    obs_rows = {int(r["tick"]): r["obs"] for r in data.topic("/observation") if "tick" in r}
    act_rows = {int(r["tick"]): r["action"] for r in data.topic("/action") if "tick" in r}
    ticks = sorted(set(obs_rows) & set(act_rows))
    if not ticks:
        raise Skip("no logged observation/action pairs")
    obs = np.array([obs_rows[t] for t in ticks], dtype=np.float32)
    act = np.array([act_rows[t] for t in ticks], dtype=np.float64)
    if run.get("policy_path") or cfg.policy:
        from export.runtime import OnnxPolicy, PolicyError, file_sha256

        path = Path(cfg.policy or run["policy_path"])
        if not path.is_file():
            raise Skip(f"policy file {path} is gone (give policy=PATH to the same file)")
        logged_sha = run.get("policy_sha256")
        sha = file_sha256(path)
        if logged_sha and sha != logged_sha:
            raise Skip(
                f"{path} is not the logged policy (sha256 {sha[:12]}..., log has {str(logged_sha)[:12]}...)"
            )
        try:
            pol = OnnxPolicy(path)
        except PolicyError as e:
            raise Skip(str(e)) from None
        if obs.shape[1] != pol.info.obs_dim:
            raise Skip(
                f"logged observations have {obs.shape[1]} entries, the policy takes {pol.info.obs_dim}"
            )
        # One observation at a time, as the deploy loop ran it (bound buffers, same kernels).
        again = np.stack([np.array(pol.act(o), dtype=np.float64) for o in obs])
        kind = "onnx"
    elif run.get("simulated"):
        again = _torch_recheck(cfg, run, spec, obs)
        kind = "torch (checkpoint)"
    elif run.get("source") not in (None, "policy"):
        raise Skip(f"the commands came from the '{run['source']}' source, not from a policy")
    else:
        raise Skip("the log names no policy file")
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
        raise Skip("the simulated log names no checkpoint (give checkpoint=PATH)")
    if not Path(path).is_file():
        raise Skip(f"checkpoint {path} is gone (give checkpoint=PATH)")
    try:
        actor = build_actor(load_checkpoint(path))
    except UserError as e:
        raise Skip(str(e)) from None
    if run.get("actor_sha256") and actor_sha256(actor) != run["actor_sha256"]:
        raise Skip(f"checkpoint {path} holds another actor than the one that wrote the log")
    with torch.no_grad():  # one row at a time, as the episode ran it (same kernels)
        a = np.concatenate(
            [actor(torch.as_tensor(o[None], dtype=torch.float32)).numpy() for o in obs]
        )
    return spec.command_for(obs, a.astype(np.float64))
