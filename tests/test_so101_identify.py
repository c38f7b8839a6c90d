"""Identification of the SO-101's servos (issue 22): an excitation of the goal positions
(`deploy source=excitation`, `configs/excitation/so101/`, chosen by the robot), the fit of the
servo gain, friction, armature and latency (`replay fit=[...]`) and the randomization
re-centred on them.

The fast tests check the excitation's table (inside the joint ranges, goal moves within the
joints' rate, every joint excited and the joints uncorrelated, the move from the measured
pose), its refusals before enable, the robot-keyed choice of the config (furuta's unchanged),
the position servo's gain as a fit parameter, and the suggested randomization's centring.
The last one identifies the `identify` reality (gain x0.8, friction x1.5, armature x1.3,
20 ms) from one simulated 20 s excitation with `replay fit=[gain,coulomb,armature,latency]`.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf

from envs.randomization import load, parse
from envs.robots import get_robot
from firmware_bridge.analysis import sysid
from firmware_bridge.analysis.fitted_configs import default_randomization, suggested_randomization
from firmware_bridge.host.servo_excitation import servo_source
from firmware_bridge.host.sources import (
    check_limits,
    excitation_signal,
    make_source,
    parse_excitation,
)
from firmware_bridge.logs.rollout_log import read_log
from firmware_bridge.sim.episodes import write_sim_run
from ppo_robot.cli import UserError, robot_group_args
from tests.conftest import ROOT, last_json, run_cli

RATE = 50.0
EXCITATION = ROOT / "configs" / "excitation" / "so101"
TRUTH = {"gain": 0.8, "coulomb": 1.5, "armature": 1.3}
"""configs/realities/so101/identify.yaml as fit multipliers ..."""
TRUTH_LATENCY_S = 0.020
"""... and its latency."""


@pytest.fixture(scope="module")
def spec():
    return get_robot("so101")


def _excitation(name: str = "prbs", **over):
    d = yaml.safe_load((EXCITATION / f"{name}.yaml").read_text())
    return parse_excitation(OmegaConf.create({**d, **over}))


def _source(ex, spec, duration_s: float, max_delta: float | None = None):
    """The servo excitation as `sources.make_source` builds it, its limits checked."""
    signal = excitation_signal(ex, RATE, duration_s)
    source, meta, table = servo_source(ex, spec, signal, RATE, max_delta)
    check_limits(spec, table, f"excitation '{ex.signal}'")
    return source, meta


def _play(source, spec, start: np.ndarray, ticks: int) -> np.ndarray:
    """The goals the source gives over `ticks`, the arm reading `start` (positions, rad)."""
    sensors = np.zeros(spec.n_sensors)
    sensors[spec.position_sensor_index()] = start
    return np.array([source(np.zeros(spec.obs_dim), sensors, k).copy() for k in range(ticks)])


@pytest.mark.parametrize("signal", ["prbs", "steps", "chirp", "multisine"])
def test_excitation_moves_every_joint_inside_its_range(spec, signal):
    source, meta = _source(_excitation(signal), spec, 20.0)
    lo, hi = spec.command_low, spec.command_high
    step = np.array([a.rate for a in spec.actuators]) / RATE
    start = spec.safe_command + np.array([0.5, -0.4, 0.3, 0.0, -1.0, 0.2])  # off home
    goals = _play(source, spec, start, int(22 * RATE))
    assert meta["excited"] == [a.name for a in spec.actuators]
    # from the measured pose, at most the joints' rate a tick, never outside the ranges
    first = np.abs(goals[0] - start)
    assert np.all(first <= step + 1e-12) and first.max() > 0.9 * step.max(), first
    assert np.all(np.abs(np.diff(goals, axis=0)) <= step + 1e-12)
    assert np.all(goals >= lo - 1e-12) and np.all(goals <= hi + 1e-12)
    # the signal part: every joint moves about home, the joints' motions uncorrelated
    moves = goals[-int(15 * RATE) :] - spec.safe_command
    assert np.all(np.ptp(moves, axis=0) > 0.2), np.ptp(moves, axis=0)
    corr = np.corrcoef(moves.T)[np.triu_indices(spec.n_actuators, 1)]
    assert np.max(np.abs(corr)) < 0.5, corr.round(2)


def test_excitation_chosen_joints_and_pose(spec):
    ex = _excitation(actuators=["elbow_flex"], pose={"shoulder_lift": -0.5})
    source, meta = _source(ex, spec, 10.0)
    goals = _play(source, spec, spec.safe_command, int(10 * RATE))
    assert meta["excited"] == ["elbow_flex"]
    held = np.ptp(goals[int(2 * RATE) :], axis=0)
    assert held[2] > 0.3 and np.all(np.delete(held, 2) == 0.0), held
    assert goals[-1, 1] == pytest.approx(-0.5)


@pytest.mark.parametrize(
    "over,expect",
    [
        ({"amplitude": 2.0}, "outside its limits"),
        ({"actuators": ["elbow"]}, "no actuator 'elbow'"),
        ({"pose": {"shoulder_lift": 3.0}}, "outside its limits"),
        ({"max_step": 0.5}, "above safety.max_delta"),
        ({"centre": {"sensor": "elbow_flex_pos"}}, "hold their pose themselves"),
    ],
)
def test_excitation_refused_before_enable(spec, over, expect):
    with pytest.raises(UserError, match=expect):
        _source(_excitation(**over), spec, 5.0, 0.1)


def test_excitation_beyond_a_range_refused_by_the_deploy(tmp_path):
    p = run_cli(
        "firmware_bridge.deploy",
        "source=excitation",
        "robot=so101",
        "port=/dev/null",
        "calibration=factory",
        "excitation.amplitude=2",
        f"log_dir={tmp_path}",
    )
    assert p.returncode == 2 and "outside its limits" in p.stderr, p.stderr
    assert "shoulder_pan" in p.stderr and "Traceback" not in p.stderr
    assert not list(tmp_path.glob("*.mcap"))


def test_excitation_config_chosen_by_the_robot():
    so101 = robot_group_args(["source=excitation", "robot=so101", "port=x"], "deploy")
    assert so101[-1] == "excitation=so101/chirp"  # deploy.yaml's default, the robot's file
    assert robot_group_args(["robot=so101", "excitation=prbs"])[-1] == "excitation=so101/prbs"
    # the pendulum's commands as they were: the shared files, no default added
    furuta = ["source=excitation", "robot=furuta", "excitation=prbs"]
    assert robot_group_args(furuta, "deploy") == furuta
    assert robot_group_args(furuta[:2], "deploy") == furuta[:2]
    assert robot_group_args(["env=so101"], "train") == ["env=so101"]


def test_gain_of_a_position_servo_is_kp_and_its_bias(spec):
    model = spec.load_model()
    params = sysid.fit_params(model)
    assert {"gain", "coulomb", "armature", "latency", "elbow_flex_gain"} <= set(params)
    res = _result(params, {"gain": 0.8, "coulomb": 1.5, "armature": 1.3, "latency": 0.021})
    m = sysid.apply_fit(model, res)
    np.testing.assert_allclose(m.actuator_gainprm[:, 0], 0.8 * model.actuator_gainprm[:, 0])
    np.testing.assert_allclose(m.actuator_biasprm[:, 1], 0.8 * model.actuator_biasprm[:, 1])
    np.testing.assert_array_equal(m.actuator_biasprm[:, 2], model.actuator_biasprm[:, 2])  # kv
    np.testing.assert_allclose(m.dof_frictionloss, 1.5 * model.dof_frictionloss)
    np.testing.assert_allclose(m.dof_armature, 1.3 * model.dof_armature)


def _result(params, values: dict[str, float]) -> sysid.FitResult:
    names = list(values)
    return sysid.FitResult(
        params=names, values=values, nominal={}, error_before=1.0, error_after=0.1,
        rmse_before={}, rmse_after={}, windows=1, window_s=0.1, evaluations=1, message="",
        entries={n: params[n].entries for n in names},
    )  # fmt: skip


def _assert_centred(sug: dict, values: dict[str, float]) -> None:
    """The default ranges of gain, friction and armature times the fitted multipliers; the
    latency range its default width, centred on the fitted latency."""
    base = yaml.safe_load(default_randomization("so101").read_text())
    parse(sug, "suggested")
    for key, fit in (("servo_gain", "gain"), ("friction", "coulomb"), ("armature", "armature")):
        for edge in ("low", "high"):
            want = base["params"][key][edge] * values[fit]
            assert sug["params"][key][edge] == pytest.approx(want, rel=1e-5), (key, sug)
    lat = sug["latency_s"]
    half = 0.5 * (base["latency_s"]["high"] - base["latency_s"]["low"])
    assert lat["high"] == pytest.approx(values["latency"] + half, abs=1e-6)
    assert lat["low"] == pytest.approx(max(0.0, values["latency"] - half), abs=1e-6)
    assert "same_as" in sug["params"]["servo_gain_bias"]  # kp's bias follows its gain


def test_suggested_randomization_is_centred_on_the_fit(spec):
    model = spec.load_model()
    values = {"gain": 0.8, "coulomb": 1.5, "armature": 1.3, "latency": 0.021}
    res = _result(sysid.fit_params(model), values)
    _assert_centred(suggested_randomization(res, model, default_randomization("so101")), values)


def test_identification_from_one_20s_excitation(spec, tmp_path):
    """The issue's figure: one 20 s excitation of the perturbed arm (`identify`), simulated
    as an episode is (`sim.episodes.write_sim_run`: the deploy's own excitation source on the
    plant, exact clocks), fitted by the real `replay` CLI, recovers the gain, friction and
    armature within 10 % and the latency within one control period; the suggested
    randomization is centred there. The same through sim_robot and deploy on the real clock:
    benchmarks/so101_identify.py (an emulator starved of CPU falls behind real time, which no
    model of the arm follows: not a test's material)."""
    cfg = OmegaConf.create(
        {"source": "excitation", "rate_hz": None, "duration_s": 20.0,
         "excitation": yaml.safe_load((EXCITATION / "prbs.yaml").read_text()),
         "safety": {"max_delta": None}}
    )  # fmt: skip
    source, meta = make_source(cfg, spec)
    env = OmegaConf.create(
        {"kind": "robot", "name": "so101", "robot": "so101", "control_hz": RATE,
         "model_xml": None, "task": None}
    )  # fmt: skip
    reality = load(ROOT / "configs" / "realities" / "so101" / "identify.yaml")
    log = write_sim_run(source, meta, env, reality, 0, tmp_path / "ex.mcap", 20.0)
    assert read_log(log).run["excitation"]["signal"] == "prbs"
    out = tmp_path / "fit"
    p = run_cli(
        "firmware_bridge.replay", f"log={log}", f"out_dir={out}",
        "fit=[gain,coulomb,armature,latency]", "plots=false", timeout=300, check=True,
    )  # fmt: skip
    fit = last_json(p.stdout)["fit"]
    print(f"fitted {fit['values']}, error {fit['error_before']} -> {fit['error_after']}")
    for name, true in TRUTH.items():
        assert abs(fit["values"][name] / true - 1) < 0.10, (name, fit["values"])
    assert abs(fit["values"]["latency"] - TRUTH_LATENCY_S) < 1 / RATE, fit["values"]
    assert fit["error_after"] < 0.3 * fit["error_before"], fit
    sug = yaml.safe_load((out / "suggested_randomization.yaml").read_text())
    _assert_centred(sug, fit["values"])
    fitted = load(out / "fitted_reality.yaml")
    assert fitted.latency_s.value == pytest.approx(fit["values"]["latency"], abs=1e-6)
