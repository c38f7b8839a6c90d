"""Where a training run's wall time goes, against the physics limit: the real Runner of
`python -m ppo_robot.train env=TASK` (the shipped config, a fixed budget: `stop_at=null`),
in this process, with a timer on each stage, and raw `mujoco.rollout` of the same task's
models with the same batch (num_envs, nthread, substeps; random controls) measured before
and after it. Reports training env-steps/s as a fraction of raw and each stage's share of
the training loop's wall time. Read by `benchmarks/train_speed.py --stages`; ends with one
JSON line of its own when run alone.

    python benchmarks/train_stages.py [--task furuta] [--steps 491520] [-- key=value ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._util import machine  # noqa: E402

STAGES = {
    "physics": "mujoco.rollout of the training envs (BatchedEnv._rollout)",
    "env_other": "the engine's observation, reward, termination, resets (env.step - physics)",
    "policy": "the policy's forward pass while collecting (PPO.act)",
    "collect_other": "normalizer, storage, truncation bootstrap, GAE (collect - the above)",
    "update": "the PPO update (epochs x minibatches)",
    "evaluate": "periodic and final evaluation, checkpoints",
    "loop_other": "metrics.csv, TensorBoard, progress",
}
"""The shares reported, each of the training loop's wall time."""


class _Timers:
    def __init__(self) -> None:
        self.s: dict[str, float] = defaultdict(float)

    def wrap(self, obj: Any, name: str, key: str) -> None:
        """Time every call of obj.name under key (an instance attribute over the method)."""
        fn = getattr(obj, name)

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.s[key] += time.perf_counter() - t

        setattr(obj, name, timed)


def compose(task: str, steps: int, run_dir: str, overrides: list[str]) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from ppo_robot.cli import CONFIG_DIR, register_schema
    from ppo_robot.config import EnvConfig, PPOConfig, TrainConfig

    register_schema("train", TrainConfig, {"env": EnvConfig, "ppo": PPOConfig})
    args = [f"env={task}", f"total_steps={steps}", f"run_dir={run_dir}", "progress=false"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return hydra_compose(config_name="train", overrides=[*args, "stop_at=null", *overrides])


def raw_rate(runner: Any, windows: int = 3, steps: int = 100) -> float:
    """Raw mujoco.rollout env-steps/s on the runner's task, batch and threads (median)."""
    from benchmarks.engine import setup_rollout

    env = runner.env
    run, n, close = setup_rollout(env.num_envs, runner.cfg.env.nthread, steps, 0, env.task)
    rates = []
    for _ in range(windows):
        t = time.perf_counter()
        run()
        rates.append(n / (time.perf_counter() - t))
    close()
    return statistics.median(rates)


def measure(task: str, steps: int, overrides: list[str]) -> dict[str, Any]:
    """One timed training run of `steps` env steps and the raw rollout beside it."""
    import os

    from omegaconf import OmegaConf

    from benchmarks.tts_common import randomization_of
    from ppo_robot.cli import typed_config
    from ppo_robot.config import TrainConfig
    from ppo_robot.runner import Runner

    with tempfile.TemporaryDirectory() as d:
        cfg = compose(task, steps, f"{d}/run", overrides)
        runner = Runner(
            typed_config(cfg, TrainConfig),
            OmegaConf.to_container(cfg, resolve=True),
            randomization_of(cfg),
        )
        load = [os.getloadavg()[0]]
        raw = [raw_rate(runner)]
        tm = _Timers()
        for obj, name, key in [
            (runner.env, "_rollout", "physics"),
            (runner.env, "step", "env_step"),
            (runner.ppo, "act", "policy"),
            (runner, "_collect", "collect"),
            (runner, "_update_step", "update"),
            (runner, "_evaluate_step", "evaluate"),
        ]:
            tm.wrap(obj, name, key)
        t = time.perf_counter()
        summary = runner.train()
        loop = time.perf_counter() - t
        raw.append(raw_rate(runner))
        load.append(os.getloadavg()[0])
    s = tm.s
    parts = {
        "physics": s["physics"],
        "env_other": s["env_step"] - s["physics"],
        "policy": s["policy"],
        "collect_other": s["collect"] - s["env_step"] - s["policy"],
        "update": s["update"],
        "evaluate": s["evaluate"],
    }
    parts["loop_other"] = loop - sum(parts.values())
    raw_sps = statistics.median(raw)
    train_sps = summary["total_steps"] / loop
    return {
        "task": task,
        "train_steps_per_s": round(train_sps, 1),
        "raw_rollout_steps_per_s": round(raw_sps, 1),
        "raw_rollout_runs": [round(x, 1) for x in raw],
        "fraction_of_raw": round(train_sps / raw_sps, 3),
        "collect_steps_per_s": round(summary["total_steps"] / s["collect"], 1),
        "shares": {k: round(v / loop, 3) for k, v in parts.items()},
        "loop_s": round(loop, 2),
        "steps": summary["total_steps"],
        "num_envs": runner.env.num_envs,
        "nthread": runner.cfg.env.nthread,
        "gradient_steps_per_sample": _grad_steps_per_sample(runner),
        "load_1min": [round(x, 2) for x in load],
    }


def _grad_steps_per_sample(runner: Any) -> str:
    p = runner.cfg.ppo
    return f"{p.epochs * p.minibatches} per {runner.batch}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="furuta")
    ap.add_argument("--steps", type=int, default=491520)
    ap.add_argument("overrides", nargs="*", help="extra key=value for the train config")
    args = ap.parse_args()
    out = measure(args.task, args.steps, args.overrides)
    print(json.dumps({**out, "machine": machine(), "date": time.strftime("%Y-%m-%d")}))


if __name__ == "__main__":
    main()
