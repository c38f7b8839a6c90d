"""Replay of a simulated SO-101 episode (six position servos, a reach goal): the episode
written by `firmware_bridge.sim.episodes` (as `ppo_robot.evaluate log=` writes it) and read
back by the real `firmware_bridge.replay` CLI tracks the episode to the encoder count over
its whole length, from the logged initial state, and scores it against the logged goal; a
log without a goal says so. The engine's first readings are the episode's (the actuators
held where those readings put them, the loads included), and the control grid holds what a
controller holds."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from envs.batched import BatchedEnv
from envs.randomization import Randomization, load
from envs.robots import get_robot
from envs.robots.so101.layout import COUNT, JOINTS, KP
from envs.robots.so101.tasks import tip_position
from envs.task import RobotTask
from firmware_bridge.analysis import sysid
from firmware_bridge.logs import rollout_log
from firmware_bridge.logs.rollout_log import read_log
from firmware_bridge.sim.episodes import write_sim_episode
from tests.conftest import ROOT, last_json, run_cli

SEED = 3
POS = [f"{j}_pos" for j in JOINTS]
LOADS = [f"{j}_load" for j in JOINTS]


def _actor(spec, gain: float = 1.0, blind_to_goal: bool = False) -> torch.nn.Module:
    """A small untrained actor, its weights and bias times `gain` (1: it drives the servos
    into their torque limit, where an open-loop replay is most sensitive; 0: action 0, so
    the incremental map holds every goal where it started and the arm settles);
    `blind_to_goal`: the goal and tip error columns zeroed, so the motion is the same
    whatever the goal."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(spec.obs_dim, spec.act_dim)
    with torch.no_grad():
        lin.weight.mul_(gain)
        lin.bias.mul_(gain)
        if blind_to_goal:
            cols = [i for i, n in enumerate(spec.obs_names) if n.startswith(("target_", "error_"))]
            lin.weight[:, cols] = 0.0
    return torch.nn.Sequential(lin, torch.nn.Tanh())


def _env_cfg():
    return OmegaConf.create(
        {"kind": "robot", "name": "so101", "robot": "so101", "control_hz": 50.0,
         "model_xml": None, "task": None}
    )  # fmt: skip


def _episode(tmp_path, name: str, actor, reality: str | None = None, seed: int = SEED):
    rand = load(str(ROOT / reality)) if reality else None
    return write_sim_episode({}, actor, _env_cfg(), rand, seed, tmp_path / f"{name}.mcap")


def _replay(log, out) -> dict:
    p = run_cli(
        "firmware_bridge.replay", f"log={log}", f"out_dir={out}", "plots=false", timeout=180
    )
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    return last_json(p.stdout)


def _episode_success(log) -> bool:
    """The success the episode itself scored (its closing summary)."""
    return json.loads(read_log(log).metadata["summary"]["success"])


@pytest.fixture(scope="module")
def spec():
    return get_robot("so101")


@pytest.mark.parametrize("reality", [None, "configs/realities/so101/latency_30ms.yaml"])
def test_simulated_episode_replays_to_the_count(spec, tmp_path, reality):
    log = _episode(tmp_path, "ep", _actor(spec), reality)
    r = _replay(log, tmp_path / "rep")
    assert r["simulated"] is True and r["ticks"] == spec.episode_steps
    # the whole episode, from its logged initial state, on the model it ran on
    worst = max(r["sim_rmse"][n] for n in POS) / COUNT
    assert worst < 2.0, {n: r["sim_rmse"][n] / COUNT for n in POS}
    assert max(r["sim_rmse"][n] for n in LOADS) < 0.05, r["sim_rmse"]
    assert all(r["time_to_divergence_s"][n] is None for n in POS + LOADS), r
    # the success section is there, scored against the logged goal, as the episode scored it
    assert not any(m.startswith("success") for m in r["missing"]), r["missing"]
    assert r["success"] is _episode_success(log)


def test_success_is_scored_against_the_logged_goal(spec, tmp_path, monkeypatch):
    actor = _actor(spec, gain=0.0, blind_to_goal=True)  # it settles: a final pose held
    probe = _episode(tmp_path, "probe", actor)
    final_tip = tip_position(spec, read_log(probe).array("/state", "sensors")[-1])
    # the same motion with the goal where the arm ends up: the episode succeeds
    monkeypatch.setattr(type(spec.objective), "sample_goal", lambda *a: final_tip[None])
    log = _episode(tmp_path, "reached", actor)
    assert read_log(log).run["goal"] == pytest.approx(final_tip.tolist())
    assert _episode_success(log) is True
    r = _replay(log, tmp_path / "rep")
    assert r["success"] is True and r["success_end"] is True, r
    # the first log's own goal, somewhere else: not reached
    r = _replay(probe, tmp_path / "rep-probe")
    assert r["success"] is False and _episode_success(probe) is False


def test_a_log_without_its_goal_says_so(spec, tmp_path, monkeypatch):
    class NoGoal(rollout_log.RolloutLog):  # a log written before goals were logged
        def __init__(self, path, meta, **kw):
            super().__init__(path, {k: v for k, v in meta.items() if k != "goal"}, **kw)

    monkeypatch.setattr(rollout_log, "RolloutLog", NoGoal)
    log = _episode(tmp_path, "nogoal", _actor(spec))
    assert "goal" not in read_log(log).run
    r = _replay(log, tmp_path / "rep")
    said = [m for m in r["missing"] if m.startswith("success:")]
    assert len(said) == 1 and "no goal" in said[0] and "'reach'" in said[0], r["missing"]
    assert "success" not in r and r["sim_rmse"] is not None  # the other sections go on


def test_without_the_initial_state_the_replay_starts_held_at_the_readings(spec, tmp_path):
    log = _episode(tmp_path, "ep", _actor(spec))
    data = read_log(log)
    tr = sysid.trace_from_log(data, spec)
    assert tr.start is not None
    np.testing.assert_array_equal(tr.safe, spec.soft_start_origin(tr.sensors[0]))
    tr.start = None  # an older simulated log, or a real one: the readings are the start
    rp = sysid.replay(sysid.Simulator(spec, spec.load_model(), 1), tr, 0.0)
    # held where the readings put the servos (not at the safe pose, half a turn away):
    # only the start's quantization (half a count) differs at first
    first = np.abs(rp.sim - rp.logged)[: int(0.1 * spec.control_hz), :6]
    assert first.max() / COUNT <= 4.0, first.max(axis=0) / COUNT
    np.testing.assert_array_equal(rp.ctrl[0], tr.safe)


def test_engine_first_readings_are_the_episodes(spec, tmp_path):
    """The engine and the episode start the same way: the same pose, the servos held at
    its readings, a load the held servo gives (not one pulling towards zero)."""
    actor = _actor(spec)
    episode = read_log(_episode(tmp_path, "ep", actor)).array("/state", "sensors")
    env = BatchedEnv(RobotTask(spec), 1, seed=SEED, nthread=1, randomization=Randomization())
    obs, _ = env.reset(seed=SEED)
    trace = [env.readings[0].copy()]
    with torch.no_grad():
        for _ in range(20):
            a = actor(torch.as_tensor(obs, dtype=torch.float32)).numpy().astype(np.float64)
            obs, *_ = env.step(a)
            trace.append(env.readings[0].copy())
    env.close()
    np.testing.assert_array_equal(np.array(trace), episode[:21])
    # a servo held at its own reading pulls with at most half a count of its spring
    load = np.abs(episode[0, 12:18])
    assert np.all(load <= KP * COUNT / 2 + spec.resolution[12]), load


def test_control_grid_holds_exact_values_and_the_disarmed_pose(spec):
    dt = 0.005
    safe = np.array([0.1, -0.2])
    values = np.array([[0.3, 0.7], [0.9, -0.4]])
    arrivals = np.array([2.5 * dt, 6.5 * dt])  # on step edges, as a simulated episode's
    centers = dt * np.arange(1, 11)
    held = [np.array([0.5, 0.6])]
    u = sysid.control_grid(arrivals, values, safe, [(4.5 * dt, math.inf)], centers, dt, held)
    # steps wholly inside one hold: that value, bit for bit (no arithmetic on it)
    assert np.array_equal(u[:2], [safe, safe]) and np.array_equal(u[2:4], values[[0, 0]])
    assert np.array_equal(u[4:], np.tile(held[0], (6, 1)))  # disarmed: the held pose
    # an arrival inside a step still splits it in proportion
    mid = sysid.control_grid(np.array([2.75 * dt]), values[:1], safe, [], centers, dt)
    np.testing.assert_allclose(mid[2], 0.25 * safe + 0.75 * values[0], rtol=0, atol=1e-15)
