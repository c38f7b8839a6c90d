"""The one plant model (envs/plant.py): the training engine, the simulated robot and the
simulated episodes read the same sensors from the same commands, reality and seed; latency,
action noise and quantization do what the reality says."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from envs.batched import BatchedEnv
from envs.plant import PlantModel, spec_reader
from envs.randomization import load
from envs.robots import get_robot
from envs.task import RobotTask
from firmware_bridge.logs.rollout_log import read_log
from firmware_bridge.sim.episodes import write_sim_episode
from firmware_bridge.sim.plant import Plant
from firmware_bridge.sim.robot_config import SimRobotConfig

SEED = 7
# Every part of the plant on: a model change, 15.3 ms latency (15 substeps: 1.5 control
# steps), action noise, sensor noise, bias, a coarser encoder. Fixed values only, so a
# reality draws nothing from the generator and all three paths start from the same state.
REALITY = """\
name: everything_on
params:
  pendulum_mass: {field: body_mass, targets: [pendulum], op: scale, value: 1.2}
latency_s: 0.0153
action_noise_std: 0.3
obs_noise_std: {arm_velocity: 0.05, pend_velocity: 0.1}
sensor_bias: {pend_angle: 0.01, arm_angle: -0.004}
resolution_scale: 4.0
"""


@pytest.fixture
def reality(tmp_path):
    p = tmp_path / "everything_on.yaml"
    p.write_text(REALITY)
    return p


def _actor(spec) -> torch.nn.Module:
    torch.manual_seed(0)
    lin = torch.nn.Linear(spec.obs_dim, spec.act_dim)
    with torch.no_grad():
        lin.weight.mul_(4.0)
    return torch.nn.Sequential(lin, torch.nn.Tanh())


def _policy(actor, obs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return actor(torch.as_tensor(obs[None], dtype=torch.float32)).numpy()[0]


def _engine_trace(spec, actor, reality, steps: int) -> np.ndarray:
    env = BatchedEnv(RobotTask(spec), 1, seed=SEED, nthread=1, randomization=load(reality))
    obs, _ = env.reset(seed=SEED)
    trace = [env.readings[0].copy()]
    for _ in range(steps):
        obs, _, term, trunc, _ = env.step(_policy(actor, obs[0])[None].astype(np.float64))
        trace.append(env.readings[0].copy())
        if term[0] or trunc[0]:
            break
    env.close()
    return np.array(trace)


def _sim_robot_trace(spec, actor, reality, steps: int) -> np.ndarray:
    plant = Plant(spec, SimRobotConfig(reality=str(reality), seed=SEED))
    # the engine's first state: a fixed reality draws nothing before the initial state
    qpos, qvel = spec.initial_state(plant.model, np.random.default_rng(SEED), 1)
    plant.reset(qpos[0], qvel[0])
    substeps = round(1 / (spec.control_hz * plant.dt))
    sens = plant.sensors()
    trace = [sens]
    for _ in range(steps):
        obs = spec.observe(sens[None])[0]
        plant.command(spec.action_to_command(_policy(actor, obs).astype(np.float64)))
        for _ in range(substeps):
            plant.step()
        sens = plant.sensors()
        trace.append(sens)
    return np.array(trace)


def _episode_trace(spec, actor, reality, tmp_path) -> np.ndarray:
    env_cfg = OmegaConf.create(
        {"kind": "robot", "name": "furuta", "robot": "furuta", "control_hz": spec.control_hz}
    )
    env_cfg.model_xml = None
    path = write_sim_episode({}, actor, env_cfg, load(reality), SEED, tmp_path / "ep.mcap")
    return read_log(path).array("/state", "sensors")


def test_engine_sim_robot_and_episodes_read_the_same_sensors(reality, tmp_path):
    spec = get_robot("furuta")
    actor = _actor(spec)
    episode = _episode_trace(spec, actor, reality, tmp_path)
    ticks = len(episode)
    assert ticks > 50  # the comparison covers a real stretch of the episode
    engine = _engine_trace(spec, actor, reality, ticks - 1)
    robot = _sim_robot_trace(spec, actor, reality, ticks - 1)
    assert engine.shape == episode.shape == robot.shape
    assert np.array_equal(engine, episode)
    assert np.array_equal(robot, episode)
    # and the plant is on: the velocities are noisy, the encoders on the coarser grid
    res = spec.resolution[0] * 4.0
    assert np.array_equal(np.round(episode[:, 0] / res) * res, episode[:, 0])
    assert np.abs(np.diff(episode[:, 2])).max() > 0.05


def test_latency_of_k_substeps_delays_the_control_by_k():
    plant = PlantModel(2, 0.001, np.full(1, -9.0), np.full(1, 9.0), np.zeros(1), None,
                       np.zeros(0), np.zeros(0), max_latency_s=0.02, command_interval=10)  # fmt: skip
    plant.configure(1, 0.013)  # env 1: 13 substeps; env 0: none
    assert plant.delay.tolist() == [0, 13]
    seen = []
    for c in (1.0, 2.0, 3.0, 4.0, 5.0):
        plant.command(np.full((2, 1), c))
        seen.append(plant.controls(10)[:, :, 0])
    seen = np.concatenate(seen, axis=1)  # (2, 50) control per substep
    assert np.array_equal(seen[0], np.repeat([1.0, 2.0, 3.0, 4.0, 5.0], 10))
    assert np.array_equal(seen[1, 13:], seen[0, :-13])
    assert np.all(seen[1, :13] == 0.0)  # the safe control until the first command arrives


def test_sim_robot_applies_a_command_after_its_latency():
    spec = get_robot("furuta")
    plant = Plant(spec, SimRobotConfig(latency_s=0.005))
    plant.hold(spec.safe_command)
    plant.command(np.array([3.0]))
    applied = []
    for _ in range(8):
        plant.step()
        applied.append(float(plant.data.ctrl[0]))
    assert applied == [0.0] * 5 + [3.0] * 3


def test_action_noise_is_one_draw_per_command_with_the_configured_std():
    n, std = 20000, 0.2
    plant = PlantModel(n, 0.001, np.full(1, -np.inf), np.full(1, np.inf), np.zeros(1), None,
                       np.zeros(0), np.zeros(0), action_noise_std=std, seed=3)  # fmt: skip
    applied = plant.command(np.ones((n, 1)))
    ctrl = plant.controls(10)
    assert np.array_equal(ctrl, np.repeat(applied[:, None, :], 10, axis=1))  # held per command
    noise = applied[:, 0] - 1.0
    assert abs(noise.std() - std) < 0.01 and abs(noise.mean()) < 0.01
    again = PlantModel(n, 0.001, np.full(1, -np.inf), np.full(1, np.inf), np.zeros(1), None,
                       np.zeros(0), np.zeros(0), action_noise_std=std, seed=3)  # fmt: skip
    assert np.array_equal(again.command(np.ones((n, 1))), applied)  # same seed, same draws


def test_readings_are_quantized_to_the_resolution():
    import mujoco

    spec = get_robot("furuta")
    model = spec.load_model()
    data = mujoco.MjData(model)
    data.qpos[:] = [0.123456, -2.345678]
    mujoco.mj_forward(model, data)
    plant = PlantModel(1, 0.001, np.full(1, -9.0), np.full(1, 9.0), np.zeros(1),
                       spec_reader(spec, model), spec.resolution, np.zeros(4))  # fmt: skip
    plant.configure(0, 0.0, np.array([0.01, 0.0, 0.0, 0.0]), 3.0)
    x = plant.sense(data.sensordata[None])[0]
    res = spec.resolution * 3.0
    true = data.sensordata[spec.sensor_index(model)]
    for i in np.flatnonzero(res > 0):
        assert x[i] == np.round(x[i] / res[i]) * res[i]
        assert abs(x[i] - (true[i] + (0.01 if i == 0 else 0.0))) <= res[i] / 2 + 1e-12
        assert x[i] != true[i]
    assert np.array_equal(x[res == 0], true[res == 0])


def test_engine_snapshot_restores_the_plant_bit_for_bit(reality):
    spec = get_robot("furuta")
    env = BatchedEnv(RobotTask(spec), 3, seed=SEED, nthread=1, randomization=load(reality))
    env.reset(seed=SEED)
    acts = np.random.default_rng(1).uniform(-1, 1, (40, 3, 1))

    def run(part):
        out = []
        for a in part:
            env.step(a)
            out.append(env.readings.copy())
        return np.array(out)

    run(acts[:20])
    snap = env.snapshot()
    first = run(acts[20:])
    env.restore(snap)
    assert np.array_equal(run(acts[20:]), first)
    env.close()
