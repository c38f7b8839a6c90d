"""Simulation: the robot spec, the batched engine, domain randomization."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from envs.batched import BatchedEnv
from envs.randomization import Binder, RandomizationError, load, parse
from envs.robots import get_robot, robots
from envs.spec import SpecError
from envs.task import RobotTask
from ppo_robot.paths import robot_option
from tests.conftest import ROOT, run_cli


@pytest.mark.parametrize("name", sorted(robots()))
def test_spec_consistency(name):
    # the action mapping (offset, scale, clip) is checked for every robot and task in
    # tests/test_conformance.py
    spec = get_robot(name)
    model = spec.load_model()
    assert model.nu == spec.n_actuators
    idx = spec.sensor_index(model)
    assert len(set(idx.tolist())) == spec.n_sensors
    assert spec.obs_dim == len(spec.obs_names) and spec.obs_dim > 0
    goal = spec.sample_goal(model, np.random.default_rng(0), 3)
    assert goal.shape == (3, spec.goal_dim)
    obs = spec.observe(np.zeros((3, spec.n_sensors)), goal)
    assert obs.shape == (3, spec.obs_dim) and obs.dtype == np.float32
    assert 1.0 / (spec.control_hz * model.opt.timestep) == pytest.approx(
        round(1.0 / (spec.control_hz * model.opt.timestep))
    )
    lay = spec.layout()
    assert lay["name"] == name and len(lay["sensors"]) == spec.n_sensors
    assert spec.layout_hash() == get_robot(name).layout_hash()
    assert spec.layout_hash() != get_robot(name, spec.control_hz * 2).layout_hash()


def test_furuta_success_test():
    spec = get_robot("furuta")
    T = spec.episode_steps
    up = np.zeros((1, T, 4))
    up[..., 1] = np.pi
    assert spec.success(up)[0]
    tilted = up.copy()
    tilted[0, -5, 1] = np.pi - 0.25
    assert not spec.success(tilted)[0]
    out = up.copy()
    out[0, 10, 0] = 2.5  # arm out of travel once
    assert not spec.success(out)[0]
    early = up.copy()
    early[0, : T // 2, 1] = 0.0  # hanging for the first half, then upright: still success
    assert spec.success(early)[0]


def test_encoder_quantization():
    spec = get_robot("furuta")
    model = spec.load_model()
    sd = np.zeros((1, model.nsensordata))
    idx = spec.sensor_index(model)
    sd[0, idx] = [0.0012345, 1.0001, 0.123456, -0.5]
    r = spec.read_sensors(sd, idx)
    q = 2 * np.pi / 2048
    assert r[0, 0] == pytest.approx(round(0.0012345 / q) * q)
    assert r[0, 1] == pytest.approx(round(1.0001 / q) * q)
    assert r[0, 2] == pytest.approx(0.123456)  # velocities are not quantized


def _run(env: BatchedEnv, actions: np.ndarray) -> np.ndarray:
    obs = [env.reset(seed=3)[0]]
    for a in actions:
        obs.append(env.step(a)[0])
    return np.array(obs)


def test_reproducible_by_seed():
    spec = get_robot("furuta")
    rand = parse(yaml.safe_load((ROOT / "configs/randomization/furuta/default.yaml").read_text()))
    acts = np.random.default_rng(0).uniform(-1, 1, (60, 8, 1))
    a = _run(BatchedEnv(RobotTask(spec), 8, seed=1, randomization=rand), acts)
    b = _run(BatchedEnv(RobotTask(spec), 8, seed=1, randomization=rand), acts)
    assert np.array_equal(a, b)
    c = BatchedEnv(RobotTask(spec), 8, seed=1, randomization=rand)
    obs = [c.reset(seed=4)[0]]
    assert not np.array_equal(obs[0], a[0])


def test_randomization_samples_stay_in_range_and_change_the_model():
    spec = get_robot("furuta")
    model = spec.load_model()
    rand = parse(yaml.safe_load((ROOT / "configs/randomization/furuta/default.yaml").read_text()))
    binder = Binder(rand, model, tuple(s.name for s in spec.sensors))
    rng = np.random.default_rng(0)
    nominal_mass = model.body_mass.copy()
    pend = 2
    masses, dampings, lat = [], [], []
    for _ in range(300):
        p = binder.sample(rng)
        binder.apply(model, p)
        masses.append(model.body_mass[pend] / nominal_mass[pend])
        dampings.append(model.dof_damping.copy())
        lat.append(p.latency_s)
        assert np.all(np.abs(p.sensor_bias[[1]]) <= 0.01)
    binder.restore(model)
    assert np.array_equal(model.body_mass, nominal_mass)
    masses = np.array(masses)
    assert masses.min() >= 0.85 and masses.max() <= 1.15 and masses.std() > 0.05
    ratio = np.array(dampings) / np.array([5e-4, 5e-5])
    assert ratio.min() >= 0.5 - 1e-12 and ratio.max() <= 2.0 + 1e-12
    assert min(lat) >= 0.0 and max(lat) <= 0.015


def _arm_travel(rand_cfg: dict | None, steps: int = 20) -> float:
    """Arm angle after a constant +5 V for `steps` control steps."""
    spec = get_robot("furuta")
    env = BatchedEnv(RobotTask(spec), 1, seed=0, nthread=1, randomization=parse(rand_cfg))
    env.reset(seed=0)
    env.sensor_bias[:] = 0
    for _ in range(steps):
        obs = env.step(np.array([[0.5]]))[0]
    return float(obs[0, 0])


def test_heavier_pendulum_moves_slower():
    nominal = _arm_travel(None)
    heavy = _arm_travel(
        {
            "params": {
                "m": {"field": "body_mass", "targets": ["pendulum"], "op": "scale", "value": 3.0}
            }
        }
    )
    weak = _arm_travel(
        {
            "params": {
                "g": {"field": "actuator_gainprm", "targets": ["motor"], "index": [0], "value": 0.5}
            }
        }
    )
    assert 0 < heavy < 0.9 * nominal
    assert 0 < weak < 0.7 * nominal


def test_latency_delays_the_action():
    spec = get_robot("furuta")

    def first_move(latency: float) -> int:
        cfg = {"latency_s": latency} if latency else None
        env = BatchedEnv(RobotTask(spec), 1, seed=0, nthread=1, randomization=parse(cfg))
        env.reset(seed=0)
        for _ in range(5):  # settle at rest with zero voltage
            env.step(np.zeros((1, 1)))
        env.sensordata[0, 0]
        for k in range(10):
            env.step(np.ones((1, 1)))
            if abs(env.sensordata[0, 2]) > 0.05:  # arm velocity
                return k
        return 99

    assert first_move(0.0) == 0
    # 30 ms = 3 control steps at 100 Hz: the arm starts moving 3 steps later
    assert first_move(0.030) == 3
    # 15 ms: 1.5 steps; the new command holds from halfway through the second step
    assert first_move(0.015) == 1


def test_gymnasium_registration_and_env_checker():
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    import envs  # noqa: F401  (registers the robots)

    env = gym.make("ppo_robot/FurutaSwingUp-v0")
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (5,)
    total = 0.0
    for _ in range(500):
        obs, r, term, trunc, info = env.step(env.action_space.sample())
        total += r
        if term or trunc:
            break
    assert trunc or term


def test_bad_randomization_configs():
    spec = get_robot("furuta")
    model = spec.load_model()
    names = tuple(s.name for s in spec.sensors)

    def bind(cfg):
        return Binder(parse(cfg), model, names)

    with pytest.raises(RandomizationError, match="no body named \\['nope'\\]"):
        bind(
            {"params": {"x": {"field": "body_mass", "targets": ["nope"], "low": 0.9, "high": 1.1}}}
        )
    with pytest.raises(RandomizationError, match="unknown MjModel field 'body_massive'"):
        bind({"params": {"x": {"field": "body_massive", "low": 0.9, "high": 1.1}}})
    with pytest.raises(RandomizationError, match="unknown distribution 'gamma'"):
        bind({"params": {"x": {"field": "body_mass", "dist": "gamma", "low": 0.9, "high": 1.1}}})
    with pytest.raises(RandomizationError, match="low 1.2 > high 0.8"):
        bind({"params": {"x": {"field": "body_mass", "low": 1.2, "high": 0.8}}})
    with pytest.raises(RandomizationError, match="unknown sensor 'gyro'"):
        bind({"obs_noise_std": {"gyro": 0.1}})
    with pytest.raises(RandomizationError, match="unknown key 'pramas'"):
        bind({"pramas": {}})


def test_mjcf_that_does_not_match_its_spec(tmp_path):
    xml = (
        (ROOT / "envs/robots/furuta/furuta.xml")
        .read_text()
        .replace('<jointvel name="pend_velocity" joint="pend_joint"/>', "")
    )
    bad = tmp_path / "bad.xml"
    bad.write_text(xml)
    with pytest.raises(SpecError, match="needs sensor 'pend_velocity'"):
        get_robot("furuta").load_model(bad)


@pytest.mark.parametrize(
    "args,expect",
    [
        (["randomization.params.pendulum_mass.targets=[nope]"], "no body named ['nope']"),
        (["randomization.params.pendulum_mass.low=1.5"], "low 1.5 > high 1.15"),
        (["randomization.params.damping.dist=gamma"], "unknown distribution 'gamma'"),
        (
            ["randomization.params.damping.field=dof_dampening"],
            "unknown MjModel field 'dof_dampening'",
        ),
    ],
)
def test_train_refuses_bad_randomization(args, expect, tmp_path):
    p = run_cli("ppo_robot.train", f"run_dir={tmp_path}/r", "total_steps=1000", *args, timeout=120)
    assert p.returncode == 2, p.stderr
    assert expect in p.stderr and "Traceback" not in p.stderr


def test_train_refuses_mjcf_without_sensor(tmp_path):
    xml = (
        (ROOT / "envs/robots/furuta/furuta.xml")
        .read_text()
        .replace('<jointpos name="arm_angle" joint="arm_joint"/>', "")
    )
    bad = tmp_path / "bad.xml"
    bad.write_text(xml)
    p = run_cli(
        "ppo_robot.train",
        f"run_dir={tmp_path}/r",
        "total_steps=1000",
        f"env.model_xml={bad}",
        timeout=120,
    )
    assert p.returncode == 2 and "needs sensor 'arm_angle'" in p.stderr


def test_bare_names_read_as_the_robots_config_files():
    # every reality binding to its robot's model: tests/test_conformance.py
    own = ROOT / "configs/realities/furuta/heavy_pendulum.yaml"
    want = load(own)
    for name in ("heavy_pendulum", "heavy_pendulum.yaml", "configs/realities/heavy_pendulum.yaml"):
        assert load(name) == want, name
        assert load(name, robot="furuta") == want, name
    with pytest.raises(RandomizationError, match="no_such_reality"):
        load("no_such_reality", robot="furuta")
    assert robot_option("randomization", "none") == "none"  # shared: as is
    assert robot_option("randomization", "strong") == "furuta/strong"
    assert robot_option("randomization", "default", "furuta") == "furuta/default"
    assert robot_option("randomization", "default", "no_such_robot") == "default"


def test_bare_randomization_name_composes_the_robots_file():
    p = run_cli("ppo_robot.train", "randomization=strong", "--cfg", "job", timeout=120)
    assert p.returncode == 0, p.stderr
    cfg = yaml.safe_load(p.stdout)
    strong = yaml.safe_load((ROOT / "configs/randomization/furuta/strong.yaml").read_text())
    assert cfg["randomization"] == strong
    assert cfg["env"]["task"] is None
    p = run_cli("ppo_robot.train", "--cfg", "job", timeout=120)
    assert yaml.safe_load(p.stdout)["randomization"]["name"] == "default"
