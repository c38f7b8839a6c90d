"""Training and evaluation entry points: summary, run folder, bad input, NaN stop, resume."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import last_json, run_cli


def test_train_run_folder_and_summary(tmp_path):
    run = tmp_path / "run"
    p = run_cli(
        "ppo_robot.train",
        f"run_dir={run}",
        "total_steps=40000",
        "eval_every=2",
        "eval_episodes=8",
        "env.num_envs=64",
        "progress=false",
        "keep_checkpoints=true",
        timeout=300,
        check=True,
    )
    s = last_json(p.stdout)
    for key in (
        "total_steps",
        "wall_s",
        "steps_per_s",
        "return_mean",
        "success_rate",
        "checkpoint",
    ):
        assert key in s
    assert s["total_steps"] >= 40000 and s["steps_per_s"] > 0
    assert (run / "config.yaml").is_file() and (run / "summary.json").is_file()
    assert json.loads((run / "summary.json").read_text()) == s
    assert (run / "checkpoints/last.pt").is_file() and (run / "checkpoints/best.pt").is_file()
    assert list((run / "tb").glob("events.out.tfevents.*"))
    rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
    assert len(rows) == s["updates"]
    for col in (
        "step",
        "wall_s",
        "steps_per_s",
        "return_mean",
        "success_rate",
        "policy_loss",
        "value_loss",
        "kl",
        "entropy",
        "lr",
    ):
        assert col in rows[0]
    # keep_checkpoints: one checkpoint per periodic evaluation, named by its step
    kept = sorted(f.name for f in (run / "checkpoints").glob("step_*.pt"))
    assert kept == [f"step_{int(r['step']):09d}.pt" for r in rows if r["eval_return"]]
    assert len(kept) >= 2
    cfg = OmegaConf.load(run / "config.yaml")
    assert cfg.env.name == "furuta" and cfg.randomization.name == "default"


@pytest.mark.parametrize(
    "args,expect",
    [
        (["env=nope"], "env"),
        (["no_such_key=1"], "no_such_key"),
        (["seed=abc"], "seed"),
        (["ppo.lr=-0.1"], "ppo.lr must be > 0"),
        (["ppo.minibatches=7"], "ppo.minibatches=7 does not divide"),
        (["ppo.objective=ppo3"], "ppo.objective"),
        (["rollback_drop=1.5"], "rollback_drop must be in [0, 1), got 1.5"),
        (["resume=/nonexistent/last.pt"], "checkpoint not found: /nonexistent/last.pt"),
        (
            ["ppo.lr_schedule=cosine"],
            "ppo.lr_schedule must be auto, constant, linear or adaptive, got 'cosine'",
        ),
    ],
)
def test_train_bad_input(args, expect, tmp_path):
    p = run_cli(
        "ppo_robot.train",
        f"run_dir={tmp_path}/r",
        "total_steps=1000",
        "progress=false",
        *args,
        timeout=120,
    )
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert expect in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "checkpoints" / "last.pt").exists()


def test_evaluate(trained, tmp_path):
    p = run_cli(
        "ppo_robot.evaluate",
        f"checkpoint={trained['checkpoint']}",
        "episodes=20",
        f"out_dir={tmp_path}",
        check=True,
    )
    s = last_json(p.stdout)
    assert s["episodes"] == 20 and s["success_rate"] >= 0.9 and s["episode_length"] == 500
    assert "return_std" in s and (tmp_path / "eval_summary.json").is_file()
    p = run_cli(
        "ppo_robot.evaluate",
        f"checkpoint={trained['checkpoint']}",
        "episodes=10",
        "reality=configs/realities/latency_10ms.yaml",
        f"out_dir={tmp_path}",
        check=True,
    )
    assert last_json(p.stdout)["reality"].endswith("latency_10ms.yaml")


@pytest.mark.parametrize(
    "args,expect",
    [
        (["checkpoint=/nonexistent.pt"], "checkpoint not found"),
        (["episodes=0"], "episodes must be >= 1"),
        (["reality=/nonexistent.yaml"], "not found: /nonexistent.yaml"),
    ],
)
def test_evaluate_bad_input(trained, args, expect):
    base = (
        []
        if any(a.startswith("checkpoint=") for a in args)
        else [f"checkpoint={trained['checkpoint']}"]
    )
    p = run_cli("ppo_robot.evaluate", *base, *args)
    assert p.returncode == 2 and expect in p.stderr and "Traceback" not in p.stderr


def test_evaluate_refuses_a_checkpoint_of_another_robot_version(trained, tmp_path):
    """A checkpoint whose robot layout differs from the installed spec (here: its version)
    is one line, exit 2, not a shape error from the network."""
    ck = torch.load(trained["checkpoint"], weights_only=False)
    ck["robot"] = {**ck["robot"], "version": ck["robot"]["version"] + 1}
    other = tmp_path / "other.pt"
    torch.save(ck, other)
    p = run_cli("ppo_robot.evaluate", f"checkpoint={other}", "episodes=2", f"out_dir={tmp_path}")
    assert p.returncode == 2 and "another version of robot 'furuta'" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "eval_summary.json").exists()


def test_corrupt_checkpoint_refused(tmp_path):
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"\x00" * 100)
    p = run_cli("ppo_robot.evaluate", f"checkpoint={bad}")
    assert p.returncode == 2 and "corrupt" in p.stderr


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    """The runner's NaN guard, in process: the loss turns NaN at the 4th update."""
    from ppo_robot import ppo as ppo_mod
    from ppo_robot.cli import RunFault
    from ppo_robot.train import train

    real_loss = ppo_mod.PPO.loss

    def loss(self, b):
        total, info = real_loss(self, b)
        if self.updates_done >= 3:
            total = total * float("nan")
        return total, info

    monkeypatch.setattr(ppo_mod.PPO, "loss", loss)
    from hydra import compose, initialize_config_dir

    from ppo_robot.cli import CONFIG_DIR, register_schema
    from ppo_robot.config import EnvConfig, PPOConfig, TrainConfig

    register_schema("train", TrainConfig, groups={"env": EnvConfig, "ppo": PPOConfig})
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"run_dir={tmp_path}/r",
                "total_steps=200000",
                "eval_every=2",
                "eval_episodes=4",
                "env.num_envs=32",
                "progress=false",
            ],
        )
    with pytest.raises(RunFault, match="non-finite loss"):
        train(cfg)
    ck = torch.load(tmp_path / "r/checkpoints/last.pt", weights_only=False)
    assert ck["train"]["update"] == 2  # the last evaluation before the NaN
    assert all(torch.isfinite(v).all() for v in ck["actor"].values() if v.is_floating_point())
    s = json.loads((tmp_path / "r/summary.json").read_text())
    assert s["status"].startswith("stopped: non-finite loss")


def test_resume_continues_bit_for_bit(tmp_path):
    """4 updates, then resume to 8 == 8 updates straight (envs, RNGs, optimizer, normalizer)."""
    common = [
        "env.num_envs=32",
        "ppo.n_steps=16",
        "eval_every=4",
        "eval_episodes=4",
        "progress=false",
        "seed=3",
    ]
    batch = 32 * 16
    run_cli(
        "ppo_robot.train",
        f"run_dir={tmp_path}/straight",
        f"total_steps={8 * batch}",
        *common,
        check=True,
        timeout=300,
    )
    run_cli(
        "ppo_robot.train",
        f"run_dir={tmp_path}/first",
        f"total_steps={4 * batch}",
        *common,
        check=True,
        timeout=300,
    )
    p = run_cli(
        "ppo_robot.train",
        f"run_dir={tmp_path}/resumed",
        f"total_steps={8 * batch}",
        f"resume={tmp_path}/first/checkpoints/last.pt",
        *common,
        check=True,
        timeout=300,
    )
    assert last_json(p.stdout)["total_steps"] == 8 * batch
    a = torch.load(tmp_path / "straight/checkpoints/last.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed/checkpoints/last.pt", weights_only=False)
    for k, v in a["actor"].items():
        assert torch.equal(v, b["actor"][k]), k
    assert a["train"]["ppo"]["lr"] == b["train"]["ppo"]["lr"]


def test_rollback_goes_on_from_best(tmp_path):
    """rollback_drop: an evaluation more than that fraction below the best sends training back
    to best.pt's actor, critic and optimizer; the rollback is in metrics.csv and the summary."""
    run = tmp_path / "run"
    p = run_cli(
        "ppo_robot.train",
        f"run_dir={run}",
        "seed=0",
        "env.num_envs=32",
        "ppo.n_steps=16",
        f"total_steps={6 * 32 * 16}",
        "eval_every=1",
        "eval_episodes=4",
        "rollback_drop=0.05",
        "keep_checkpoints=true",
        "progress=false",
        check=True,
        timeout=300,
    )
    rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
    rolled = [i for i, r in enumerate(rows) if r["rollback"] == "1"]
    assert rolled and last_json(p.stdout)["rollbacks"] == len(rolled)
    assert "rolled back to best.pt" in p.stderr

    def kept(i):  # the checkpoint kept after update i (after any rollback there)
        return torch.load(
            run / f"checkpoints/step_{int(rows[i]['step']):09d}.pt", weights_only=False
        )

    best, best_key = None, None
    for i, r in enumerate(rows):
        key = (float(r["eval_success"]), float(r["eval_return"]))
        if best_key is None or key > best_key:
            best, best_key = i, key
            assert r["rollback"] == ""
            continue
        drop = float(rows[best]["eval_return"]) - float(r["eval_return"])
        assert (r["rollback"] == "1") == (drop > 0.05 * abs(float(rows[best]["eval_return"])))
        if r["rollback"] == "1":
            a, b = kept(i), kept(best)
            for sa, sb in ((a["actor"], b["actor"]), (a["train"]["critic"], b["train"]["critic"])):
                assert all(torch.equal(v, sb[k]) for k, v in sa.items())
            assert a["train"]["ppo"]["lr"] == b["train"]["ppo"]["lr"]
            opt_a = a["train"]["ppo"]["optimizer"]["state"]
            opt_b = b["train"]["ppo"]["optimizer"]["state"]
            assert all(torch.equal(opt_a[k]["exp_avg"], opt_b[k]["exp_avg"]) for k in opt_a)
            assert a["train"]["step"] > b["train"]["step"]  # the steps spent still count
            assert a["train"]["ppo"]["updates_done"] == a["train"]["update"]  # and the schedule


ROLLBACK_RUN = [
    "seed=17",
    "env.num_envs=32",
    "ppo.n_steps=16",
    "eval_every=1",
    "eval_episodes=4",
    "rollback_drop=0.05",
    "progress=false",
]
"""A small run that rolls back: with seed 17 its best evaluation is at update 6 and update 7
falls more than 5 % below it (as does update 4). The seed was chosen by running seeds until
this pattern appeared; the noise draws changed with the one plant (envs/plant.py)."""


def _rows(run) -> list[dict]:
    return list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))


def test_resume_into_a_new_folder_keeps_the_best_and_rolls_back(tmp_path):
    """6 updates, then resume into a new run_dir to 8: the new folder first receives the run's
    best.pt and metrics.csv rows, so the rollback at update 7 (before any new best) goes back
    to the run's best, the summary names the new folder's best.pt, and the whole run equals 8
    updates straight (metrics and weights). The first run's folder is left as it was."""
    batch = 32 * 16
    first, resumed, straight = tmp_path / "first", tmp_path / "resumed", tmp_path / "straight"
    for run, updates in ((straight, 8), (first, 6)):
        run_cli(
            "ppo_robot.train",
            f"run_dir={run}",
            f"total_steps={updates * batch}",
            *ROLLBACK_RUN,
            check=True,
            timeout=300,
        )
    first_rows = _rows(first)
    p = run_cli(
        "ppo_robot.train",
        f"run_dir={resumed}",
        f"total_steps={8 * batch}",
        f"resume={first}/checkpoints/last.pt",
        *ROLLBACK_RUN,
        check=True,
        timeout=300,
    )
    s = last_json(p.stdout)
    rows = _rows(resumed)
    best = max(float(r["eval_return"]) for r in first_rows)
    assert rows[6]["rollback"] == "1" and float(rows[6]["eval_return"]) < best  # the case
    assert all(float(r["eval_return"]) < best for r in rows[6:])  # and no new best after it
    assert s["rollbacks"] == 2 and s["return_mean"] == pytest.approx(best, rel=1e-5)
    assert s["checkpoint"] == str(resumed / "checkpoints/best.pt")
    a, b = (resumed / "checkpoints/best.pt").read_bytes(), (first / "checkpoints/best.pt")
    assert a == b.read_bytes()

    def same_run(row: dict) -> dict:  # all but the timings
        return {k: v for k, v in row.items() if k not in ("wall_s", "steps_per_s")}

    assert [same_run(r) for r in rows] == [same_run(r) for r in _rows(straight)]
    x = torch.load(straight / "checkpoints/last.pt", weights_only=False)
    y = torch.load(resumed / "checkpoints/last.pt", weights_only=False)
    assert all(torch.equal(v, y["actor"][k]) for k, v in x["actor"].items())
    assert _rows(first) == first_rows and len(first_rows) == 6


def test_resume_in_place_and_without_the_runs_best(tmp_path):
    """Resumed into its own folder, a run keeps its best.pt and drops the metrics rows after
    the checkpoint (resumed twice from update 6 to 7: rows 1-7, once each); from a checkpoint
    with no best.pt beside it, it warns and chooses a new best.pt at the next evaluation."""
    batch = 32 * 16
    run, bare, new = tmp_path / "run", tmp_path / "bare", tmp_path / "new"
    run_cli(
        "ppo_robot.train",
        f"run_dir={run}",
        f"total_steps={6 * batch}",
        "keep_checkpoints=true",
        *ROLLBACK_RUN,
        check=True,
        timeout=300,
    )
    before, best = _rows(run), (run / "checkpoints/best.pt").read_bytes()
    bare.mkdir()
    (bare / "last.pt").write_bytes((run / "checkpoints/last.pt").read_bytes())
    for _ in range(2):
        p = run_cli(
            "ppo_robot.train",
            f"run_dir={run}",
            f"total_steps={7 * batch}",
            f"resume={run}/checkpoints/step_{6 * batch:09d}.pt",
            *ROLLBACK_RUN,
            check=True,
            timeout=300,
        )
        assert "no best.pt beside" not in p.stderr
        rows = _rows(run)
        assert rows[:6] == before and [r["update"] for r in rows] == [str(i) for i in range(1, 8)]
        assert rows[6]["rollback"] == "1" and last_json(p.stdout)["rollbacks"] == 2
        assert (run / "checkpoints/best.pt").read_bytes() == best
    p = run_cli(
        "ppo_robot.train",
        f"run_dir={new}",
        f"total_steps={7 * batch}",
        f"resume={bare}/last.pt",
        *ROLLBACK_RUN,
        check=True,
        timeout=300,
    )
    assert "no best.pt beside" in p.stderr
    assert last_json(p.stdout)["checkpoint"] == str(new / "checkpoints/best.pt")
    ck = torch.load(new / "checkpoints/best.pt", weights_only=False)
    assert ck["train"]["update"] == 7  # the first evaluation after the resume
    assert [r["update"] for r in _rows(new)] == ["7"]  # no run folder around it: no history


def test_multirun_sweeps_seeds(tmp_path):
    p = run_cli(
        "ppo_robot.train",
        "-m",
        "seed=0,1",
        "total_steps=2048",
        "env.num_envs=32",
        "ppo.n_steps=16",
        "eval_episodes=2",
        "progress=false",
        f"run_dir={tmp_path}/s${{seed}}",
        f"hydra.sweep.dir={tmp_path}/sweep",
        timeout=300,
        check=True,
    )
    lines = [json.loads(ln) for ln in p.stdout.splitlines() if ln.startswith("{")]
    assert sorted(s["run_dir"] for s in lines) == [f"{tmp_path}/s0", f"{tmp_path}/s1"]
    assert (tmp_path / "s0/checkpoints/last.pt").is_file() and (
        tmp_path / "s1/checkpoints/last.pt"
    ).is_file()
