"""One simulated episode written as a rollout log in the deploy format (`ppo_robot.evaluate
log=PATH`), so that `firmware_bridge.replay` compares simulated and real runs with one tool.

The episode runs the robot's MJCF (with the evaluation's randomization sampled once, as a
reality) the way `firmware_bridge.sim_robot` runs it against an ideal host: physics at the
model's timestep; a STATE every control period (the first at the initial state, then
`sensordata` after a physics step, as the training engine reads them) through the one plant
model (`envs.plant`: sensor noise, bias, resolution); the command the policy computes from
it takes effect from the next physics step (plus the sampled latency, in physics steps,
with action noise drawn once per command). The policy is
the actor's exported semantics: the mean action, mapped to commands by the spec.

The log's metadata marks it simulated and states its clocks exactly (`timing`), the
episode's goal (a goal-directed task) and its exact initial physics state (`initial_state`:
the qpos and qvel the first STATE was read from, which quantized readings cannot give), so
that replay scores the episode and reproduces it; it names the checkpoint (when it can be
found) and the actor's weight hash, so replay re-checks the policy with the torch actor.
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


def _reality(rand, model, names: tuple[str, ...], rng: np.random.Generator):
    """Sample the evaluation's randomization once and apply it to `model`, as a reality.

    Returns (perturbation or None, obs noise std, action noise std, its log metadata)."""
    if rand.is_empty:
        return None, np.zeros(len(names)), 0.0, {}
    from envs.randomization import Binder

    binder = Binder(rand, model, names)
    p = binder.sample(rng)
    binder.apply(model, p)
    meta = {
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
        "sensor_bias": None if p.sensor_bias is None else p.sensor_bias.tolist(),
        "resolution_scale": p.resolution_scale,
        "gravity": None if p.gravity is None else p.gravity.tolist(),
        "pushes": "not simulated" if rand.push_prob > 0 else None,
    }
    return p, binder.obs_noise_std, rand.action_noise_std, meta


def _metadata(spec, env_cfg, ck_path, sha, latency_s, seed, pert_meta, dt) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return {
        "robot": spec.name,
        "robot_layout": spec.layout(),
        "simulated": True,
        "source": "simulation",
        "rate_hz": spec.control_hz,
        "checkpoint": ck_path,
        "actor_sha256": sha,
        "model_xml": env_cfg.model_xml,
        "latency_s": latency_s,
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


def _put_tick(rlog, k: int, t: float, sens, obs, cmd) -> None:
    """One control tick as the deploy bridge logs it (ideal host: no delays, no misses)."""
    t_ns = int(round(t * 1e9))
    common = {"tick": k, "t_host": t}
    state = {
        **common,
        "seq": k,
        "t_us": int(round(t * 1e6)),
        "status": STATUS_RUNNING,
        "fault": 0,
        "last_cmd_seq": k - 1 if k else NO_COMMAND,
        "rx_errors": 0,
        "sensors": sens.tolist(),
    }
    rlog.put("/state", t_ns, state)
    rlog.put("/observation", t_ns, {**common, "obs": obs.tolist()})
    rlog.put("/action", t_ns, {**common, "action": cmd.tolist()})
    command = {**common, "seq": k, "state_seq": k, "values": cmd.tolist(), "limited": False}
    rlog.put("/command", t_ns, command)
    zeros = ("period_error_us", "state_age_ms", "compute_us", "obs_us", "policy_us")
    timing = {**common, "deadline": t, **dict.fromkeys(zeros, 0.0)}
    rlog.put("/timing", t_ns, {**timing, "safety_us": 0.0, "send_us": 0.0, "missed": False})


def _run(spec, model, data, plant, command, rlog, substeps: int, goal, ticks_max: int):
    """The closed loop, as the training engine steps it: a reading, the command
    (`command(obs, sensors, last, tick)`: the policy's, or a source's; through the plant:
    noise, latency), `substeps` physics steps; each tick logged. The actuators start held
    where the first reading puts them (`soft_start_origin`; that reading's loads are the
    held actuators', as in the engine), and the observation reads the episode's `goal` and
    the previous command. Returns (ticks, terminated, time of the last tick, success)."""
    import mujoco

    aidx, sidx = spec.actuator_index(model), spec.sensor_index(model)
    dt = float(model.opt.timestep)
    trace = np.zeros((ticks_max, spec.n_sensors))
    sens = plant.sense(data.sensordata[None])[0]
    last = spec.soft_start_origin(sens[None])
    data.ctrl[aidx] = np.clip(last[0], plant.ctrl_low, plant.ctrl_high)
    mujoco.mj_forward(model, data)  # the first readings as the held actuators give them
    sens = plant.sense(data.sensordata[None], again=True)[0]
    plant.hold(np.arange(1), last)
    ticks, t = 0, 0.0
    while ticks < ticks_max:
        t = ticks * substeps * dt
        obs = spec.observe(sens[None], goal[None], last)[0]
        cmd = command(obs, sens, last, ticks)
        _put_tick(rlog, ticks, t, sens, obs, cmd)
        trace[ticks] = sens
        ticks += 1
        if bool(spec.terminated(data.sensordata[sidx][None])[0]):
            return ticks, True, t, False
        plant.command(cmd[None])
        last = cmd[None]
        for ctrl in plant.controls(substeps)[0]:
            data.ctrl[aidx] = ctrl
            mujoco.mj_step(model, data)
        sens = plant.sense(data.sensordata[None])[0]
    return ticks, False, t, bool(spec.success(trace[None, :ticks], goal[None])[0])


def _policy(spec, actor):
    """The actor's exported semantics as a command: the mean action, mapped by the spec."""
    import torch

    def command(obs, sens, last, tick):
        with torch.no_grad():
            action = actor(torch.as_tensor(obs[None], dtype=torch.float32)).numpy()[0]
        return spec.action_to_command(action.astype(np.float64)[None], last)[0]

    return command


def _setup(env_cfg: Any, rand, seed: int):
    """The episode's robot, model (the reality applied), plant, initial state and goal."""
    import mujoco

    from envs.make import robot_spec
    from envs.plant import PlantModel, ctrl_bounds, spec_reader
    from envs.randomization import Randomization
    from envs.task import physics_substeps
    from ppo_robot.cli import UserError

    if env_cfg.kind != "robot":
        raise UserError(
            f"log=: env '{env_cfg.name}' is not a robot spec; rollout logs are written for robots"
        )
    spec = robot_spec(env_cfg)
    model = spec.load_model(env_cfg.model_xml)
    rng = np.random.default_rng(seed)
    names = tuple(s.name for s in spec.sensors)
    p, noise_std, act_noise, pert_meta = _reality(rand or Randomization(), model, names, rng)
    dt = float(model.opt.timestep)
    substeps = physics_substeps(model, spec.control_hz)
    lo, hi = ctrl_bounds(model, spec.actuator_index(model))
    plant = PlantModel(
        1, dt, lo, hi, spec.safe_command, spec_reader(spec, model), spec.resolution, noise_std,
        action_noise_std=act_noise, max_latency_s=p.latency_s if p else 0.0,
        command_interval=substeps, seed=seed,
    )  # fmt: skip
    if p is not None:
        plant.configure(0, p.latency_s, p.sensor_bias, p.resolution_scale)
    qpos, qvel = spec.initial_state(model, rng, 1)
    goal = spec.sample_goal(model, rng, 1)[0]
    data = mujoco.MjData(model)
    mujoco.mj_resetData(model, data)
    data.qpos[:] = qpos[0]
    data.qvel[:] = qvel[0]
    mujoco.mj_forward(model, data)
    return spec, model, data, plant, pert_meta, substeps, goal


def _write(env_cfg, rand, seed, path, command, ticks_max, ck_path, sha, extra) -> Path:
    """Simulate `command` for up to `ticks_max` ticks and write it to `path` as a rollout log."""
    from firmware_bridge.logs.rollout_log import RolloutLog

    spec, model, data, plant, pert_meta, substeps, goal = _setup(env_cfg, rand, seed)
    dt = float(model.opt.timestep)
    latency_s = int(plant.delay[0]) * dt
    meta = {**_metadata(spec, env_cfg, ck_path, sha, latency_s, seed, pert_meta, dt), **extra}
    if spec.goal_dim:
        meta["goal"] = goal.tolist()
    meta["initial_state"] = {"qpos": data.qpos.tolist(), "qvel": data.qvel.tolist()}
    path = Path(path)
    rlog = RolloutLog(path, meta, clock=lambda: 0)  # the simulation's clock: t_host = sim time
    rlog.event("enable", "simulated episode", t_host=0.0)
    ticks, terminated, end, success = _run(
        spec, model, data, plant, command, rlog, substeps, goal, ticks_max
    )
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
    from envs.make import robot_spec

    spec = robot_spec(env_cfg) if env_cfg.kind == "robot" else None
    sha = actor_sha256(actor)
    ck_path = str(Path(checkpoint).resolve()) if checkpoint else _find_checkpoint(ck, sha)
    command = _policy(spec, actor) if spec is not None else None
    steps = spec.episode_steps if spec is not None else 0
    return _write(env_cfg, rand, seed, path, command, steps, ck_path, sha, {})


def write_sim_run(
    source, source_meta: dict[str, Any], env_cfg: Any, rand, seed: int, path, duration_s: float
) -> Path:
    """Simulate `duration_s` of a command source (`firmware_bridge.host.sources`: an
    excitation, a playback; `source(obs, sensors, tick)` in actuator units) on the robot as
    an episode runs, and write it to `path` as a rollout log (the source's metadata in it)."""
    from envs.make import robot_spec

    ticks = (
        int(round(duration_s * robot_spec(env_cfg).control_hz)) if env_cfg.kind == "robot" else 0
    )

    def command(obs, sens, last, tick):
        return np.array(source(obs, sens, tick), dtype=np.float64)

    return _write(env_cfg, rand, seed, path, command, ticks, None, None, source_meta)
