"""Scale-out through Hydra's launcher plugins (docs/benchmarks.md, "Scale-out"): a two-job
multirun of the real `python -m ppo_robot.train --multirun` through our `hydra/launcher=local`
config (hydra-joblib-launcher) completes, one run folder per job, each with its own seed."""

from __future__ import annotations

import json

from omegaconf import OmegaConf

from tests.conftest import run_cli


def test_two_job_multirun_through_joblib(tmp_path):
    p = run_cli(
        "ppo_robot.train",
        "--multirun",
        "hydra/launcher=local",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        "seed=0,1",
        f"run_dir={tmp_path}/s${{seed}}",
        "total_steps=512",
        "env.num_envs=16",
        "ppo.n_steps=16",
        "eval_episodes=2",
        "env.nthread=1",
        "update_threads=1",
        "progress=false",
        timeout=300,
        check=True,
    )
    summaries = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 2 and all(s["status"] == "completed" for s in summaries)
    for seed in (0, 1):
        run = tmp_path / f"s{seed}"
        assert json.loads((run / "summary.json").read_text())["total_steps"] == 512
        assert OmegaConf.load(run / "config.yaml").seed == seed
        assert (run / "checkpoints" / "best.pt").is_file()
    sweep = OmegaConf.load(tmp_path / "sweep" / "multirun.yaml")
    assert sweep.hydra.launcher._target_.endswith("joblib_launcher.JoblibLauncher")
    assert sweep.hydra.launcher.n_jobs == 2
