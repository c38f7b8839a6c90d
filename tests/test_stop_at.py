"""stop_at: training ends once evaluation holds a target; time_to_target_s in the summary."""

from __future__ import annotations

import csv
import json
import time

import pytest
import torch

from ppo_robot.config import StopAt
from ppo_robot.stopping import TargetWatch, process_age_s, since_start_s
from tests.conftest import last_json, run_cli

# a tiny furuta run: 1,024 samples an update, an evaluation after each
TINY = [
    "env.num_envs=32",
    "ppo.n_steps=32",
    "ppo.hidden=[16,16]",
    "eval_every=1",
    "eval_episodes=4",
    "progress=false",
    "randomization=none",
]
BATCH = 32 * 32


def test_watch_counts_consecutive_evaluations_and_keeps_the_streaks_start():
    w = TargetWatch(StopAt(success=0.9, evals=2))
    assert not w.observe(0.95, 1.0, step=100)  # one
    assert not w.observe(0.5, 1.0, step=200)  # broken: starts over
    assert not w.observe(0.9, 1.0, step=300)
    assert w.summary() == {"time_to_target_s": None, "target_step": None}
    assert w.observe(1.0, 1.0, step=400)  # held: the streak began at step 300
    assert w.summary()["target_step"] == 300
    assert 0 < w.summary()["time_to_target_s"] <= since_start_s() + 0.01  # 2 decimals
    ret = TargetWatch(StopAt(return_mean=10.0, evals=1))
    assert not ret.observe(None, float("nan"), step=1) and ret.observe(None, 10.0, step=2)
    for off in (None, StopAt()):  # stop_at=null, or neither target given
        assert not TargetWatch(off).observe(1.0, 1e9, step=1)


def test_process_age_counts_from_the_interpreters_start():
    age = process_age_s()
    assert age is not None and 0 < age < 3600  # this pytest process started before the test
    assert since_start_s() >= age - 0.05


def test_reachable_target_stops_early_and_keeps_the_checkpoint_that_met_it(tmp_path):
    run = tmp_path / "run"
    t0 = time.perf_counter()
    p = run_cli(
        "ppo_robot.train",
        f"run_dir={run}",
        "total_steps=20480",  # 20 updates
        *TINY,
        "stop_at.success=null",
        "stop_at.return_mean=-1e12",  # every finite return meets it
        "stop_at.evals=2",
        check=True,
    )
    command_s = time.perf_counter() - t0
    s = last_json(p.stdout)
    assert s["status"] == "stopped: target reached (return >= -1e+12 for 2 evaluations)"
    assert s["updates"] == 2 and s["total_steps"] == 2 * BATCH
    assert s["target_step"] == BATCH  # the first evaluation of the streak that held
    rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
    assert [r["update"] for r in rows] == ["1", "2"] and rows[-1]["eval_return"]
    # from the command's start: its imports (torch, mujoco, hydra: well over 0.1 s) are in,
    # unlike the training loop's own clock (the first row's wall_s, before its evaluation)
    assert float(rows[0]["wall_s"]) + 0.1 < s["time_to_target_s"] < command_s
    assert s["checkpoint"] == str(run / "checkpoints" / "last.pt")
    ck = torch.load(s["checkpoint"], weights_only=False)
    assert ck["train"]["step"] == 2 * BATCH
    assert s["return_mean"] == s["last_return_mean"]
    assert json.loads((run / "summary.json").read_text()) == s


def test_unreachable_target_runs_its_budget_with_no_time_to_target(tmp_path):
    p = run_cli(
        "ppo_robot.train",
        f"run_dir={tmp_path}/run",
        "total_steps=3072",  # 3 updates
        *TINY,
        "stop_at.success=null",
        "stop_at.return_mean=1e12",
        check=True,
    )
    s = last_json(p.stdout)
    assert s["status"] == "completed" and s["updates"] == 3
    assert s["time_to_target_s"] is None and s["target_step"] is None


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["stop_at.evals=0"], "stop_at.evals"),
        (["stop_at.success=1.5"], "stop_at.success"),
        (["stop_at.return_mean=100"], "stop_at.return_mean"),  # furuta's success is set too
        (["stop_at.success=nope"], "stop_at.success"),
        (["stop_at.patience=3"], "stop_at.patience"),
    ],
)
def test_bad_stop_at_is_one_line_naming_the_key(tmp_path, args, key):
    p = run_cli("ppo_robot.train", f"run_dir={tmp_path}/run", "total_steps=1024", *TINY, *args)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], p.stderr
    assert not (tmp_path / "run").exists()


def test_default_robot_stops_at_its_target_and_gymnasium_tasks_do_not():
    from hydra import compose, initialize_config_dir

    from ppo_robot.cli import CONFIG_DIR, register_schema
    from ppo_robot.config import EnvConfig, PPOConfig, TrainConfig

    register_schema("train", TrainConfig, {"env": EnvConfig, "ppo": PPOConfig})
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        furuta = compose(config_name="train").stop_at
        cheetah = compose(config_name="train", overrides=["env=halfcheetah"]).stop_at
    assert furuta.success == 0.95 and furuta.evals == 2
    assert cheetah.success is None and cheetah.return_mean is None
