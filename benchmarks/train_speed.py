"""Training speed: our trainer vs Stable-Baselines3 PPO on HalfCheetah-v5, same process.

Ours: `python -m ppo_robot.train env=halfcheetah ppo=fast env.num_envs=64` (SB3's network
size, 64 envs on the batched engine, few large minibatches) for a fixed number of steps, no
evaluation; SB3: PPO with its default hyperparameters on 1 Gymnasium env
(`stable-baselines3` from the bench extras). Medians of `--repeats` runs each, interleaved;
ends with one JSON line with both steps/s and `ratio_vs_sb3`. `--shipped` also times the
shipped HalfCheetah config (`env=halfcheetah` alone: the zoo-derived `ppo=halfcheetah`, the
one the returns at 1M steps come from), reported beside it as `shipped_*`.

    python benchmarks/train_speed.py [--steps 131072] [--sb3-steps 16384] [--repeats 3] [--shipped]
    python benchmarks/train_speed.py -- ppo.epochs=10   # other overrides for ours
    python benchmarks/train_speed.py --stages   # the physics limit instead (train_stages.py)

`--stages`: for the default robot and HalfCheetah-v5 with the shipped configs, training
env-steps/s as a fraction of raw `mujoco.rollout` on the same models and batch in the same
run, and each stage's share of the training loop (`benchmarks/train_stages.py`); no SB3.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._util import cli, machine  # noqa: E402

FAST = ["ppo=fast", "env.num_envs=64"]


def ours(steps: int, overrides: list[str]) -> float:
    with tempfile.TemporaryDirectory() as d:
        s = cli(
            "ppo_robot.train",
            "env=halfcheetah",
            f"total_steps={steps}",
            f"run_dir={d}/r",
            "eval_every=0",
            "eval_episodes=1",
            "progress=false",
            *overrides,
        )
    # the summary's wall time includes the final evaluation of 1 episode; steps_per_s
    # is steps over the whole run's wall time
    return float(s["steps_per_s"])


def sb3(steps: int) -> float:
    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    env = gym.make("HalfCheetah-v5")
    model = PPO("MlpPolicy", env, verbose=0, seed=0, device="cpu")
    t = time.perf_counter()
    model.learn(total_timesteps=steps)
    return steps / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=131072)
    ap.add_argument("--sb3-steps", type=int, default=16384)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shipped", action="store_true", help="also time the shipped config")
    ap.add_argument("--stages", action="store_true", help="fraction of raw rollout, by stage")
    ap.add_argument("overrides", nargs="*", help="extra key=value for ppo_robot.train")
    args = ap.parse_args()
    if args.stages:
        from benchmarks.train_stages import measure

        runs = [measure("furuta", 491520, []), measure("halfcheetah", 32768, [])]
        print(json.dumps({"stages": runs, "machine": machine(), "date": time.strftime("%Y-%m-%d")}))
        return
    overrides = [*FAST, *args.overrides]
    ours_sps, sb3_sps, shipped_sps = [], [], []
    for _ in range(args.repeats):  # interleaved, so all see the same machine state
        ours_sps.append(ours(args.steps, overrides))
        sb3_sps.append(sb3(args.sb3_steps))
        if args.shipped:
            shipped_sps.append(ours(args.steps // 4, []))
    o, b = statistics.median(ours_sps), statistics.median(sb3_sps)
    out = {
        "env": "HalfCheetah-v5",
        "ours_steps_per_s": round(o, 1),
        "sb3_steps_per_s": round(b, 1),
        "ratio_vs_sb3": round(o / b, 2),
        "ours_runs": [round(x, 1) for x in ours_sps],
        "sb3_runs": [round(x, 1) for x in sb3_sps],
        "ours_steps": args.steps,
        "sb3_steps": args.sb3_steps,
        "overrides": overrides,
    }
    if shipped_sps:
        s = statistics.median(shipped_sps)
        out |= {
            "shipped_steps_per_s": round(s, 1),
            "shipped_ratio_vs_sb3": round(s / b, 2),
            "shipped_runs": [round(x, 1) for x in shipped_sps],
            "shipped_steps": args.steps // 4,
        }
    out |= {"machine": machine(), "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
