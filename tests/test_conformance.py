"""Conformance: every registered robot and task, through every stage.

One suite, parametrized over the registry (`envs.robots.robots()`, plugins included): the
spec against its MJCF, the action mapping, the engine, Gymnasium, its realities and
randomizations, and (slow) a 1-update training run through export, a `sim_robot`
handshake, a 1 s deploy and a replay of that log, all as the real CLIs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import gymnasium
import mujoco
import numpy as np
import pytest
import torch
import yaml

from envs.batched import BatchedEnv
from envs.gym_env import gym_id
from envs.randomization import Binder, load, parse
from envs.robots import get_entry, get_robot, robots, transport
from envs.spec import SpecError
from envs.task import RobotTask, physics_substeps
from export.onnx import parity_observations
from export.runtime import OnnxPolicy, PolicyMismatch
from ppo_robot.checkpoint import build_actor, load_checkpoint
from ppo_robot.paths import config_dir
from tests.conftest import PY, ROOT, last_json, plugin_env, run_cli

CASES = [(r, t) for r, e in sorted(robots().items()) for t in e.task_names]
IDS = [f"{r}-{t}" for r, t in CASES]


@pytest.fixture(params=CASES, ids=IDS)
def case(request):
    robot, task = request.param
    return robot, task, get_robot(robot, task=task)


def test_spec_matches_its_mjcf(case):
    robot, task, spec = case
    model = spec.load_model()  # check_model: every sensor (component) and actuator exists
    spec.check_model(model, spec.xml)
    assert spec.xml_path.parent == get_entry(robot).folder
    index = spec.sensor_index(model)
    for i, s in enumerate(spec.sensors):  # a layout entry is one value of a MuJoCo sensor
        sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, s.mujoco_name)
        assert sid >= 0, s.name
        adr, dim = model.sensor_adr[sid], model.sensor_dim[sid]
        assert index[i] == adr + (s.component or 0) and (s.component or 0) < dim, s.name
    assert np.array_equal(spec.actuator_index(model), np.arange(model.nu))
    assert spec.task_name == task and spec.obs_dim == len(spec.obs_names) > 0
    assert physics_substeps(model, spec.control_hz) >= 1
    lay = spec.layout()
    assert lay["name"] == robot
    # only a task other than the default enters the layout (and its hash)
    default = get_entry(robot).default_task
    assert ("task" in lay) == (task != default)
    if task != default:
        assert spec.layout_hash() != get_robot(robot).layout_hash()


def test_action_mapping(case):
    """Action 0 holds an incremental actuator's last command and gives an absolute one's
    offset; +-1 moves each by its gain; actions clip to [-1, 1], commands to the limits;
    an incremental map refuses to run without the last command, and the exported graph's
    version (the last command read from the observation) agrees with the engine's."""
    _, _, spec = case
    n, amap = spec.act_dim, spec.action_map
    lo, hi = spec.command_low, spec.command_high
    last = lo + (hi - lo) * np.linspace(0.2, 0.8, n)  # inside the limits, not the middle
    base = np.where(amap.incremental, last, spec.action_offset)
    zero = spec.action_to_command(np.zeros((1, n)), last[None])[0]
    assert np.allclose(zero, np.clip(base, lo, hi))
    plus = spec.action_to_command(np.ones((1, n)), last[None])[0]
    minus = spec.action_to_command(-np.ones((1, n)), last[None])[0]
    assert np.allclose(plus, np.clip(base + amap.gain, lo, hi))
    assert np.allclose(minus, np.clip(base - amap.gain, lo, hi))
    assert np.all(amap.gain[amap.incremental] < (hi - lo)[amap.incremental])
    wild = spec.action_to_command(np.array([[50.0] * n, [-50.0] * n]), np.stack([last, last]))
    assert np.all(wild >= lo) and np.all(wild <= hi)
    assert np.allclose(wild, np.stack([plus, minus]))  # actions clip to [-1, 1] first
    if amap.any_incremental:
        with pytest.raises(SpecError, match="last command"):
            spec.action_to_command(np.zeros((1, n)))
        obs = spec.observe(_readings(spec), _goal(spec), last[None])
        a = np.linspace(-1, 1, n)[None]
        np.testing.assert_allclose(
            spec.command_for(obs, a), spec.action_to_command(a, last[None]), atol=1e-6
        )
    for a in spec.actuators:  # the safe command is a command the controller accepts
        assert a.low <= a.safe <= a.high, a.name


def _readings(spec) -> np.ndarray:
    """One reading inside every sensor's envelope."""
    return (0.5 * (spec.sensor_low + spec.sensor_high))[None]


def _goal(spec) -> np.ndarray | None:
    return np.zeros((1, spec.goal_dim)) if spec.goal_dim else None


def test_hundred_env_steps_are_finite(case):
    _, _, spec = case
    env = BatchedEnv(RobotTask(spec), 4, seed=0, nthread=1)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (4, spec.obs_dim)
    rng = np.random.default_rng(0)
    for _ in range(100):
        obs, rew, term, trunc, _ = env.step(rng.uniform(-1, 1, (4, spec.act_dim)))
        assert np.all(np.isfinite(obs)) and np.all(np.isfinite(rew))
    env.close()


def test_initial_state_is_the_tasks(case):
    _, _, spec = case
    model = spec.load_model()
    qpos, qvel = spec.initial_state(model, np.random.default_rng(0), 16)
    assert qpos.shape == (16, model.nq) and qvel.shape == (16, model.nv)
    assert np.all(np.isfinite(qpos)) and np.all(np.isfinite(qvel))


def test_gymnasium_make(case):
    import envs  # noqa: F401  (registers the robots)

    robot, task, spec = case
    env = gymnasium.make(gym_id(robot, task))
    assert env.unwrapped.spec_.task_name == task
    obs, _ = env.reset(seed=0)
    assert obs.shape == (spec.obs_dim,) and np.all(np.isfinite(obs))
    obs, r, *_ = env.step(env.action_space.sample())
    assert np.isfinite(r)
    env.close()


def _group_files(group: str, robot: str) -> list:
    return sorted((config_dir() / group / robot).glob("*.yaml"))


def test_its_realities_and_randomizations_bind_to_its_model(case):
    robot, _, spec = case
    model = spec.load_model()
    names = tuple(s.name for s in spec.sensors)
    realities = _group_files("realities", robot)
    rands = _group_files("randomization", robot)
    if robot in ("furuta",):  # the shipped robots ship both groups
        assert realities and rands
    for f in realities:
        r = load(f.stem, robot=robot)
        assert r == load(f)
        Binder(r, model, names)
    for f in rands:
        Binder(parse(yaml.safe_load(f.read_text())), model, names)
    for f in sorted((config_dir() / "realities" / robot).glob("*/*.yaml")):  # edge/ and such
        Binder(load(f), model, names)


# ----------------------------------------------------------------------------- end to end


def _train_one_update(robot: str, task: str, run_dir) -> str:
    p = run_cli(
        "ppo_robot.train",
        f"run_dir={run_dir}",
        f"env.robot={robot}",
        f"env.name={robot}",
        f"env.task={task}",
        f"env.control_hz={get_robot(robot, task=task).control_hz:g}",  # the robot's own rate
        "randomization=none",
        "env.num_envs=8",
        "ppo.n_steps=16",
        "total_steps=128",
        "eval_every=1000",
        "eval_episodes=2",
        "progress=false",
        timeout=180,
        check=True,
        env=plugin_env(robot),
    )
    return last_json(p.stdout)["checkpoint"]


SLACK_MS = 250


def _start_sim_robot(robot: str, link, env: dict | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(
        # the pipeline is under test here, not timing: a loaded machine may pause either
        # process past the default 50 ms watchdog (tests/test_reliability_* test those)
        [PY, "-m", "firmware_bridge.sim_robot", f"robot={robot}", f"port_link={link}"]
        + [f"watchdog_ms={SLACK_MS}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**(env or os.environ), "PYTHONUNBUFFERED": "1"},
    )
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise AssertionError(f"sim_robot did not start: {line!r} {proc.stderr.read()}")
    return proc


@pytest.mark.slow
def test_train_export_deploy_replay(case, tmp_path):
    robot, task, spec = case
    ckpt = _train_one_update(robot, task, tmp_path / "run")
    onnx_path = tmp_path / "policy.onnx"
    env = plugin_env(robot)  # a test robot reaches the CLIs as a plugin
    run_cli(
        "export.onnx", f"checkpoint={ckpt}", f"output={onnx_path}", check=True, timeout=120, env=env
    )

    # onnxruntime against torch (the trained actor plus the spec's mapping)
    ck = load_checkpoint(ckpt)
    actor = build_actor(ck)
    pol = OnnxPolicy(onnx_path)
    assert pol.info.robot == robot and pol.info.task == task
    pol.check(spec)
    other = [t for t in get_entry(robot).task_names if t != task]
    for t in other:  # a policy for one task is refused for another
        with pytest.raises(PolicyMismatch, match=f"task '{task}'"):
            pol.check(get_robot(robot, task=t))
    mean = actor.normalizer.mean.numpy()
    std = np.sqrt(actor.normalizer.var.numpy())
    obs = parity_observations(mean, std, 500, seed=3)
    with torch.no_grad():
        ref = spec.command_for(obs, actor(torch.from_numpy(obs)).double().numpy())
    assert np.max(np.abs(pol.act_batch(obs) - ref)) <= 1e-5

    # sim_robot (the controller, or the servos on their bus), 1 s of deploy, a replay
    bus = transport(robot) != "framed"
    sim = _start_sim_robot(robot, tmp_path / "port", env)
    try:
        p = run_cli(
            "firmware_bridge.deploy",
            f"policy={onnx_path}",
            f"port={tmp_path / 'port'}",
            f"log_dir={tmp_path / 'logs'}",
            "duration_s=1",
            "status=false",
            f"safety.stale_state_ms={SLACK_MS}",
            *(["calibration=factory", "bus.hold_s=0.1", "bus.read_timeout_ms=200"] if bus else []),
            timeout=60,
            env=env,
        )
        s = last_json(p.stdout)
    finally:
        sim.terminate()
        sim_out, _ = sim.communicate(timeout=10)
    # an untrained policy may drive the robot out of its envelope: the controller's LIMIT
    # (on a bus, the host's own envelope check) ends the run by fault (exit 3), with the
    # log closed; anything else is a failure
    if p.returncode == 3:
        limit = "sensor_envelope" if bus else "controller fault LIMIT"
        assert limit in p.stderr, p.stderr
        assert 0 < s["ticks"] <= int(round(spec.control_hz))
    else:
        assert p.returncode == 0, p.stderr
        assert s["ticks"] == int(round(spec.control_hz))
    if bus:  # the servos were left with torque off, confirmed on both sides
        assert s["torque_off_confirmed"] is True and s["bus_errors"] == 0
        assert last_json(sim_out)["torque_on_at_exit"] == []
    r = last_json(
        run_cli(
            "firmware_bridge.replay",
            f"log={s['log']}",
            f"out_dir={tmp_path / 'rep'}",
            "plots=false",
            timeout=120,
            check=True,
            env=env,
        ).stdout
    )
    assert r["robot"] == robot and r["ticks"] == s["ticks"] and r["missing"] == []
    assert r["policy_recheck"] == "onnx" and r["policy_max_abs_diff"] <= 1e-6
    settings = yaml.safe_load((get_entry(robot).folder / "robot.yaml").read_text())
    assert r["rmse_horizon_s"] == settings["rmse_horizon_s"]  # replay.yaml's null: the robot's
    assert set(r["sim_rmse"]) == {x.name for x in spec.sensors}


# ----------------------------------------------------------------------------- plugins


def test_a_plugin_robot_reaches_subprocess_clis(tmp_path):
    """PPO_ROBOT_PLUGINS names a module inside tests/: a CLI in a subprocess sees the robot
    it registers, its Gymnasium ids included; a module that cannot load is one line."""
    env = {**os.environ, "PPO_ROBOT_PLUGINS": "tests.plugin_robot", "PYTHONPATH": str(ROOT)}
    code = (
        "import json, gymnasium, envs\n"
        "from envs.robots import get_robot\n"
        "s = get_robot('furuta_twin', task='balance')\n"
        "e = gymnasium.make('ppo_robot/FurutaTwinBalance-v0')\n"
        "print(json.dumps([s.name, s.task_name, str(s.xml_path), e.reset(seed=0)[0].shape[0]]))\n"
    )
    p = subprocess.run([PY, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    name, task, xml, obs_dim = json.loads(p.stdout.strip().splitlines()[-1])
    assert (name, task, obs_dim) == ("furuta_twin", "balance", 5)
    assert xml.endswith("envs/robots/furuta/furuta.xml")
    sim = _start_sim_robot("furuta_twin", tmp_path / "port", env)  # a CLI serves it
    sim.terminate()
    sim.communicate(timeout=10)
    bad = {**env, "PPO_ROBOT_PLUGINS": "tests.no_such_plugin"}
    p = run_cli("firmware_bridge.sim_robot", f"port_link={tmp_path / 'p2'}", env=bad, timeout=60)
    assert p.returncode == 2 and "tests.no_such_plugin" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_unknown_robot_or_task_is_one_line():
    with pytest.raises(ValueError, match=r"unknown robot 'nope' \(known: \['furuta'"):
        get_robot("nope")
    with pytest.raises(ValueError, match=r"robot 'furuta' has no task 'x' \(known: \["):
        get_robot("furuta", task="x")
    assert sys.modules.get("tests.plugin_robot") is None  # plugins stay out of this process
