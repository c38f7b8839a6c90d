"""One simulated episode written as a rollout log in the deploy format (`ppo_robot.evaluate
log=PATH`), so that `firmware_bridge.replay` compares simulated and real runs with one tool.

The episode runs the robot's MJCF (with the evaluation's randomization sampled once, as a
reality) the way `firmware_bridge.sim_robot` runs it against an ideal host: physics at the
model's timestep; a STATE every control period holding `sensordata` after a physics step,
through the spec's sensor model (noise, bias, resolution); the command the policy computes
from it takes effect from the next physics step (plus the sampled latency). The policy is
the actor's exported semantics: the mean action, mapped to commands by the spec.

The log's metadata marks it simulated and states its clocks exactly (`timing`), names the
checkpoint (when it can be found) and the actor's weight hash, so replay re-checks the
policy with the torch actor.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np

NO_COMMAND = 0xFFFFFFFF
STATUS_RUNNING = 1 | 8  # protocol Status.ENABLED | Status.STREAMING


def _state_sha(state_dict: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(state_dict):
        h.update(k.encode())
        h.update(np.ascontiguousarray(state_dict[k].detach().cpu().numpy()).tobytes())
    return h.hexdigest()


def actor_sha256(actor) -> str:
    """Hash of the actor's weights and normalizer statistics."""
    return _state_sha(actor.state_dict())


def _find_checkpoint(ck: dict[str, Any], sha: str) -> str | None:
    """The checkpoint file holding this actor: in the training run's checkpoints folder."""
    import torch

    run_dir = (ck.get("config") or {}).get("run_dir")
    if not run_dir:
        return None
    folder = Path(run_dir) / "checkpoints"
    cands = sorted(
        folder.glob("*.pt"), key=lambda p: (p.name != "last.pt", p.name != "best.pt", p.name)
    )
    for p in cands:
        try:
            other = torch.load(p, map_location="cpu", weights_only=False)
        except Exception:  # an unreadable file is simply not the one
            continue
        if isinstance(other, dict) and "actor" in other and _state_sha(other["actor"]) == sha:
            return str(p.resolve())
    return None


def write_sim_episode(
    ck: dict[str, Any],
    actor,
    env_cfg: Any,
    rand,
    seed: int,
    path: str | Path,
    checkpoint: str | Path | None = None,
) -> Path:
    """Simulate one episode of `actor` and write it to `path` as a rollout log."""
    import mujoco
    import torch
    from omegaconf import OmegaConf

    from envs.make import robot_spec
    from envs.randomization import Binder, Randomization
    from envs.task import physics_substeps
    from firmware_bridge.logs.rollout_log import RolloutLog
    from ppo_robot.cli import UserError

    if env_cfg.kind != "robot":
        raise UserError(
            f"log=: env '{env_cfg.name}' is not a robot spec; rollout logs are written for robots"
        )
    spec = robot_spec(env_cfg)
    model = spec.load_model(env_cfg.model_xml)
    names = tuple(s.name for s in spec.sensors)
    rng = np.random.default_rng(seed)
    rand = rand or Randomization()
    dt = float(model.opt.timestep)
    n_sens = spec.n_sensors
    noise_std, bias, res_scale, latency_s, act_noise = np.zeros(n_sens), None, 1.0, 0.0, 0.0
    pert_meta: dict[str, Any] = {}
    if not rand.is_empty:
        binder = Binder(rand, model, names)
        p = binder.sample(rng)
        binder.apply(model, p)
        noise_std = binder.obs_noise_std
        bias, res_scale, latency_s = p.sensor_bias, p.resolution_scale, p.latency_s
        act_noise = rand.action_noise_std
        pert_meta = {
            "fields": [
                {
                    "key": b.rng.key,
                    "field": b.rng.field,
                    "targets": list(b.rng.targets),
                    "op": b.rng.op,
                    "index": None if b.rng.index is None else list(b.rng.index),
                    "values": np.asarray(v).ravel().tolist(),
                }
                for b, v in zip(binder.bound, p.fields, strict=True)
            ],
            "latency_s": p.latency_s,
            "sensor_bias": None if bias is None else bias.tolist(),
            "resolution_scale": res_scale,
            "gravity": None if p.gravity is None else p.gravity.tolist(),
            "pushes": "not simulated" if rand.push_prob > 0 else None,
        }
    lat_steps = int(round(latency_s / dt))
    substeps = physics_substeps(model, spec.control_hz)
    resolution = spec.resolution * res_scale
    sidx = spec.sensor_index(model)
    aidx = spec.actuator_index(model)

    qpos, qvel = spec.initial_state(model, rng, 1)
    data = mujoco.MjData(model)
    mujoco.mj_resetData(model, data)
    data.qpos[:] = qpos[0]
    data.qvel[:] = qvel[0]
    mujoco.mj_forward(model, data)

    sha = actor_sha256(actor)
    ck_path = str(Path(checkpoint).resolve()) if checkpoint else _find_checkpoint(ck, sha)
    meta = {
        "robot": spec.name,
        "robot_layout": spec.layout(),
        "simulated": True,
        "source": "simulation",
        "rate_hz": spec.control_hz,
        "checkpoint": ck_path,
        "actor_sha256": sha,
        "model_xml": env_cfg.model_xml,
        "latency_s": lat_steps * dt,
        "seed": seed,
        "perturbation": pert_meta,
        "config": {
            "env": OmegaConf.to_container(env_cfg, resolve=True)
            if OmegaConf.is_config(env_cfg)
            else dict(env_cfg)
        },
        "timing": {
            "clock_offset_s": 0.0,
            "command_transit_s": dt / 2,
            "note": "host and controller clocks are the simulation's; a command takes effect "
            "from the physics step after the STATE it answers (arrival mid-way through that step)",
        },
        "start_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = Path(path)
    rlog = RolloutLog(path, meta, clock=lambda: 0)  # the simulation's clock: t_host = sim time
    safe = spec.safe_command
    lo, hi = model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1]
    pending: list[tuple[int, np.ndarray]] = []
    ctrl = safe.copy()
    trace = np.zeros((spec.episode_steps, n_sens))
    ticks, terminated = 0, False
    n = 0
    rlog.event("enable", "simulated episode", t_host=dt)
    with torch.no_grad():
        while ticks < spec.episode_steps:
            n += 1
            while pending and pending[0][0] <= n:
                ctrl = pending.pop(0)[1]
            data.ctrl[aidx] = np.clip(ctrl, lo[aidx], hi[aidx])
            mujoco.mj_step(model, data)
            if (n - 1) % substeps:
                continue
            t = n * dt
            t_ns = int(round(t * 1e9))
            noise = rng.normal(0.0, 1.0, n_sens) * noise_std if noise_std.any() else None
            sens = spec.read_sensors(data.sensordata[None], sidx, resolution, noise, bias)[0]
            obs = spec.observe(sens[None])[0]
            action = actor(torch.as_tensor(obs[None], dtype=torch.float32)).numpy()[0]
            cmd = spec.action_to_command(action.astype(np.float64))
            applied = cmd + rng.normal(0.0, act_noise, cmd.shape) if act_noise > 0 else cmd
            pending.append((n + 1 + lat_steps, applied))
            k = ticks
            common = {"tick": k, "t_host": t}
            rlog.put(
                "/state",
                t_ns,
                {
                    **common,
                    "seq": k,
                    "t_us": int(round(t * 1e6)),
                    "status": STATUS_RUNNING,
                    "fault": 0,
                    "last_cmd_seq": k - 1 if k else NO_COMMAND,
                    "rx_errors": 0,
                    "sensors": sens.tolist(),
                },
            )
            rlog.put("/observation", t_ns, {**common, "obs": obs.tolist()})
            rlog.put("/action", t_ns, {**common, "action": cmd.tolist()})
            rlog.put(
                "/command",
                t_ns,
                {**common, "seq": k, "state_seq": k, "values": cmd.tolist(), "limited": False},
            )
            rlog.put(
                "/timing",
                t_ns,
                {
                    **common,
                    "deadline": t,
                    "period_error_us": 0.0,
                    "state_age_ms": 0.0,
                    "compute_us": 0.0,
                    "obs_us": 0.0,
                    "policy_us": 0.0,
                    "safety_us": 0.0,
                    "send_us": 0.0,
                    "missed": False,
                },
            )
            trace[k] = sens
            ticks += 1
            true = data.sensordata[sidx]
            if bool(spec.terminated(true[None])[0]):
                terminated = True
                break
    end = n * dt
    success = bool(spec.success(trace[None, :ticks])[0]) and not terminated
    rlog.event(
        "disable", "end of simulated episode" + (" (terminated)" if terminated else ""), t_host=end
    )
    rlog.close(
        {
            "ticks": ticks,
            "rate_hz": spec.control_hz,
            "duration_s": round(ticks / spec.control_hz, 3),
            "missed_deadlines": 0,
            "success": success,
            "stopped_by": "terminated" if terminated else "duration",
            "simulated": True,
        }
    )
    return path
