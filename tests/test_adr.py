"""Automatic domain randomization's ranges (envs/adr.py) on toy success signals, exactly:
an edge widens when success at it is high, narrows when low, stays between the thresholds,
never passes its hard bound or the nominal; the state survives a save and load bit for bit;
a bad `adaptive:` config is one error naming its key."""

from __future__ import annotations

import copy
import csv
import json

import mujoco
import numpy as np
import pytest

from envs.adr import AdrError, AdrState, parse_adr
from envs.batched import BatchedEnv
from envs.randomization import load
from envs.robots import get_robot
from envs.task import RobotTask
from export.runtime import OnnxPolicy
from tests.conftest import ROOT, last_json, run_cli

CFG = {
    "share": 0.2,
    "episodes": 4,
    "widen_above": 0.75,
    "narrow_below": 0.5,
    "params": {
        "mass": {"nominal": 1.0, "bounds": [0.5, 1.5], "step": 0.125},
        "latency_s": {"nominal": 0.0, "bounds": [0.0, 0.05], "step": 0.0078125},
    },
}


def _state() -> AdrState:
    return AdrState(parse_adr(CFG))


def _probe(s: AdrState, param: int, side: int, successes: list[bool]) -> list[int]:
    return [s.record(param, side, ok) for ok in successes]


def test_ranges_start_at_the_nominal():
    s = _state()
    assert s.ranges() == {"mass": [1.0, 1.0], "latency_s": [0.0, 0.0]}
    assert s.probe_count(128) == 26 and s.probe_count(2) == 1


def test_an_edge_widens_when_success_is_high_and_stops_at_its_bound():
    s = _state()
    assert _probe(s, 0, 1, [True, True, True, False]) == [0, 0, 0, 1]  # 3/4 >= 0.75
    assert s.ranges()["mass"] == [1.0, 1.125]
    for _ in range(10):
        _probe(s, 0, 1, [True] * 4)
    assert s.ranges()["mass"] == [1.0, 1.5]  # the hard bound
    assert _probe(s, 0, 1, [True] * 4) == [0, 0, 0, 0]  # at the bound: no move reported
    _probe(s, 0, 0, [True] * 4)
    assert s.ranges()["mass"] == [0.875, 1.5]  # the low edge moves on its own


def test_an_edge_narrows_when_success_is_low_never_past_the_nominal():
    s = _state()
    for _ in range(2):
        _probe(s, 0, 0, [True] * 4)
    assert s.ranges()["mass"] == [0.75, 1.0]
    assert _probe(s, 0, 0, [True, False, False, False]) == [0, 0, 0, -1]  # 1/4 < 0.5
    assert s.ranges()["mass"] == [0.875, 1.0]
    for _ in range(5):
        _probe(s, 0, 0, [False] * 4)
    assert s.ranges()["mass"] == [1.0, 1.0]
    _probe(s, 0, 1, [False] * 4)  # narrowing a range that never grew: stays at the nominal
    assert s.ranges()["mass"] == [1.0, 1.0]


def test_between_the_thresholds_the_edge_stays_and_the_buffer_restarts():
    s = _state()
    assert _probe(s, 1, 1, [True, True, False, False]) == [0, 0, 0, 0]  # 0.5: neither
    assert s.ranges()["latency_s"] == [0.0, 0.0]
    assert s.count[1, 1] == 0 and s.hits[1, 1] == 0


def test_a_closed_loop_settles_where_success_turns():
    """Success iff the probed edge is within 0.25 of the nominal: the high edge climbs to
    1.25, fails at 1.375 and narrows back, so it ends at 1.25 or 1.375, never beyond."""
    s = _state()
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(400):
        for param, side in s.assign(rng, 4):
            ok = abs(s.edge(param, side) - s.config.params[param].nominal) <= 0.25
            s.record(int(param), int(side), ok)
        seen.add(s.ranges()["mass"][1])
    assert s.ranges()["mass"][1] in (1.25, 1.375) and max(seen) == 1.375
    assert s.ranges()["mass"][0] in (0.75, 0.625)
    # latency: its low edge is its bound; its high edge is always within 0.25 of the
    # nominal, so it widened to its bound (6 steps make 0.046875, the 7th is clipped)
    assert s.ranges()["latency_s"] == [0.0, 0.05]


def test_state_survives_save_and_load_bit_for_bit():
    a, rng = _state(), np.random.default_rng(1)
    for _ in range(37):
        for param, side in a.assign(rng, 3):
            a.record(int(param), int(side), bool(rng.random() < 0.7))
    b = _state()
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    for x, y in ((a.low, b.low), (a.high, b.high), (a.hits, b.hits), (a.count, b.count)):
        assert np.array_equal(x, y) and x.dtype == y.dtype
    r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
    for _ in range(20):  # and both go on identically
        for (p1, s1), (p2, s2) in zip(a.assign(r1, 3), b.assign(r2, 3), strict=True):
            ok = bool(r1.random() < 0.6)
            assert a.record(int(p1), int(s1), ok) == b.record(int(p2), int(s2), ok)
            r2.random()
    assert a.state_dict() == b.state_dict()
    other = AdrState(parse_adr({**CFG, "params": {"mass": CFG["params"]["mass"]}}))
    with pytest.raises(AdrError, match="saved for"):
        other.load_state_dict(a.state_dict())


@pytest.mark.parametrize(
    "change, key",
    [
        ({"params": {"mass": {"nominal": 2.0, "bounds": [0.5, 1.5], "step": 0.1}}}, "mass.bounds"),
        ({"params": {"mass": {"nominal": 1.0, "bounds": [0.5, 1.5], "step": 0.0}}}, "mass.step"),
        ({"params": {"mass": {"nominal": 1.0, "bounds": [0.5, 1.5], "step": -1}}}, "mass.step"),
        ({"widen_above": 0.4}, "thresholds out of order"),
        ({"narrow_below": 0.9, "widen_above": 0.8}, "thresholds out of order"),
        ({"share": 1.5}, "share"),
        ({"episodes": 0}, "episodes"),
        ({"params": {}}, "params"),
        ({"params": {"mass": {"nominal": 1.0, "bounds": [0.5, 1.5]}}}, "missing 'step'"),
        ({"windows": 3}, "unknown key 'windows'"),
    ],
)
def test_bad_config_names_the_key(change, key):
    with pytest.raises(AdrError, match=key.replace("(", r"\(")) as e:
        parse_adr({**CFG, **change})
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- in the engine

ADAPTIVE = ROOT / "configs" / "randomization" / "furuta" / "adaptive.yaml"


def _env(n: int = 20, seed: int = 0) -> BatchedEnv:
    return BatchedEnv(
        RobotTask(get_robot("furuta")), n, seed=seed, nthread=1, randomization=load(ADAPTIVE)
    )


def test_probe_envs_run_their_episode_at_the_edge():
    env = _env()
    adr, s = env.adr, env.adr.state
    s.low[:] = [0.7, 0.8, 0.5, 0.5, 0.0]
    s.high[:] = [1.3, 1.2, 2.0, 2.0, 0.02]
    env.reset(seed=1)
    body = mujoco.mj_name2id(env.nominal, mujoco.mjtObj.mjOBJ_BODY, "pendulum")
    nominal = env.nominal.body_mass[body]
    assert adr.first_probe == 17  # 15 % of 20, the last envs
    assert np.all(adr.assigned[:17] == -1) and np.all(adr.assigned[17:] >= 0)
    for i, m in enumerate(env.models):
        scale = m.body_mass[body] / nominal
        if tuple(adr.assigned[i]) in ((0, 0), (0, 1)):
            assert scale == pytest.approx(s.edge(0, adr.assigned[i][1]), abs=1e-12)
        else:
            assert 0.7 <= scale <= 1.3
    env.close()


def test_probe_results_update_the_ranges_and_resume_bit_for_bit():
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (900, 12, 1))
    a = _env(12, seed=2)
    a.reset(seed=2)
    for t in range(900):
        if t == 450:
            snap = copy.deepcopy(a.snapshot())
        a.step(actions[t])
    assert a.adr.state.count.sum() + a.adr.narrowed > 0  # probes finished and were counted
    b = _env(12, seed=99)
    b.reset(seed=5)
    b.restore(snap)
    for t in range(450, 900):
        b.step(actions[t])
    assert a.adr.state.state_dict() == b.adr.state.state_dict()
    assert np.array_equal(a.adr.assigned, b.adr.assigned) and np.array_equal(a.obs, b.obs)


def test_a_probe_of_an_edge_that_moved_meanwhile_does_not_count():
    env = _env()
    adr, s = env.adr, env.adr.state
    env.reset(seed=1)
    probe = adr.first_probe
    param, side = (int(x) for x in adr.assigned[probe])
    s._move(param, side, +1)  # the edge moves out while the probe's episode runs
    before = s.count.copy()
    adr.finished(np.array([probe]), np.array([True]))
    assert np.array_equal(s.count, before) and adr.assigned[probe][0] == -1
    env.close()


def test_evaluations_run_over_the_hard_bounds_whatever_the_ranges_reached(tmp_path):
    """The training ranges grow; evaluations must stay comparable (best.pt, rollback and
    stop_at rank them), so the evaluation env draws over the hard bounds."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from envs.randomization import parse
    from ppo_robot.cli import register_schema, typed_config
    from ppo_robot.config import EnvConfig, PPOConfig, TrainConfig
    from ppo_robot.paths import config_dir
    from ppo_robot.runner import Runner

    register_schema("train", TrainConfig, {"env": EnvConfig, "ppo": PPOConfig})
    over = ["randomization=furuta/adaptive", "env.num_envs=8", "eval_episodes=40"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        raw = compose(config_name="train", overrides=[*over, f"run_dir={tmp_path}"])
    cfg = OmegaConf.to_container(raw, resolve=True)
    runner = Runner(typed_config(raw, TrainConfig), cfg, parse(cfg["randomization"]))
    ev, tr = runner.eval_env.adr, runner.adr
    bounds = np.array([(p.lower, p.upper) for p in tr.state.config.params])
    assert ev.frozen and np.array_equal(np.c_[ev.state.low, ev.state.high], bounds)
    tr.state.high[:] = tr.state.low  # whatever training reaches, the evaluation is the same
    assert np.array_equal(np.c_[ev.state.low, ev.state.high], bounds)
    runner.eval_env.reset(seed=0)  # episodes draw their plants as an evaluation's do
    body = mujoco.mj_name2id(runner.eval_env.nominal, mujoco.mjtObj.mjOBJ_BODY, "pendulum")
    scale = [m.body_mass[body] for m in runner.eval_env.models]
    scale = np.array(scale) / runner.eval_env.nominal.body_mass[body]
    assert scale.min() < 0.8 and scale.max() > 1.35  # spread over [0.5, 1.6], not at 1.0


def test_train_refuses_a_bad_adaptive_config_in_one_line():
    p = run_cli(
        "ppo_robot.train",
        "randomization=furuta/adaptive",
        "randomization.adaptive.params.damping.step=0",
        "total_steps=1000",
        timeout=120,
    )
    assert p.returncode == 2, p.stderr
    assert "adaptive.params.damping.step" in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_a_run_reports_its_ranges_and_the_policy_carries_them(tmp_path):
    """metrics.csv has the ranges per update, adr_ranges.json and the summary name them,
    the exported policy's metadata records them."""
    p = run_cli(
        "ppo_robot.train",
        f"run_dir={tmp_path}/run",
        "randomization=furuta/adaptive",
        "env.num_envs=20",
        "ppo.n_steps=16",
        "total_steps=1280",
        "eval_every=2",
        "eval_episodes=2",
        "stop_at=null",
        "progress=false",
        timeout=300,
        check=True,
    )
    s = last_json(p.stdout)
    assert set(s["adr"]["ranges"]) == {
        "pendulum_mass",
        "motor_gain",
        "damping",
        "coulomb",
        "latency_s",
    }
    saved = json.loads((tmp_path / "run" / "adr_ranges.json").read_text())
    assert saved == s["adr"] and saved["bounds"]["latency_s"] == [0.0, 0.045]
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert (
        len(rows) == 4
        and float(rows[-1]["adr.pendulum_mass.high"]) == saved["ranges"]["pendulum_mass"][1]
    )
    onnx_path = tmp_path / "policy.onnx"
    run_cli("export.onnx", f"checkpoint={s['checkpoint']}", f"output={onnx_path}", check=True)
    meta = OnnxPolicy(onnx_path).info.meta
    assert json.loads(meta["train.adr_ranges"]) == saved["ranges"]
