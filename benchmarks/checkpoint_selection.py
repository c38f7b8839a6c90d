"""Which `best.pt` would a run have kept with N evaluation episodes, and how good is it?

Replays the trainer's checkpoint selection on a run trained with `keep_checkpoints=true`:
for each N in `--select`, every kept checkpoint is evaluated as the trainer would have with
`eval_episodes=N` (the same environment seeds, the same deterministic policy), the best is
kept (first maximum, as the trainer does), and it is then evaluated on `--episodes` held-out
starts, as `ppo_robot.evaluate` would (seed 12345). Evaluation settings do not change
training, so one run answers for every N exactly. Ends with one JSON line.

    python -m ppo_robot.train env=halfcheetah seed=0 keep_checkpoints=true run_dir=runs/hc0
    python benchmarks/checkpoint_selection.py runs/hc0 [runs/hc1 ...] --select 16 64 --episodes 150
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._util import machine  # noqa: E402
from envs.make import make_env  # noqa: E402
from ppo_robot.checkpoint import build_actor, load_checkpoint  # noqa: E402
from ppo_robot.cli import UserError, fail, one_line  # noqa: E402
from ppo_robot.runner import (  # noqa: E402
    EVAL_ENV_SEED,
    EVAL_RESET_SEED,
    evaluate_policy,
    selection_key,
)


def select(run: Path, sizes: list[int], episodes: int, test_seed: int) -> dict:
    paths = sorted((run / "checkpoints").glob("step_*.pt"))
    if not paths:
        raise UserError(f"{run}: no checkpoints/step_*.pt (train with keep_checkpoints=true)")
    cks = [load_checkpoint(p) for p in paths]
    env_cfg = OmegaConf.create(cks[0]["env"])
    seed = cks[0]["config"]["seed"]
    actors = [build_actor(ck) for ck in cks]
    out: dict = {"run": str(run), "seed": seed, "checkpoints": len(paths)}
    test_env = make_env(env_cfg, episodes, test_seed, None)
    for n in sizes:
        env = make_env(env_cfg, n, seed + EVAL_ENV_SEED, None)  # the trainer's evaluation env
        t0 = time.perf_counter()
        evals = [evaluate_policy(a, env, seed + EVAL_RESET_SEED) for a in actors]
        eval_s = (time.perf_counter() - t0) / len(actors)
        i = max(range(len(evals)), key=lambda j: selection_key(evals[j]))  # first maximum
        test = evaluate_policy(actors[i], test_env, test_seed)
        out[f"select{n}"] = {
            "step": cks[i]["train"]["step"],
            "selection_return": round(evals[i].return_mean, 1),
            "test_return": round(test.return_mean, 1),
            "test_std": round(test.return_std, 1),
            "eval_s": round(eval_s, 3),  # one selection evaluation of N episodes, mean
        }
        print(f"{run} select {n}: {out[f'select{n}']}", file=sys.stderr, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--select", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--episodes", type=int, default=150, help="held-out evaluation episodes")
    ap.add_argument("--seed", type=int, default=12345, help="seed of the held-out episodes")
    args = ap.parse_args()
    for name, n in [("--select", n) for n in args.select] + [("--episodes", args.episodes)]:
        if n < 1:
            fail(f"{name} must be >= 1 episodes, got {n}")
    torch.set_num_threads(1)
    try:
        runs = [select(r, args.select, args.episodes, args.seed) for r in args.runs]
    except UserError as e:  # a missing, empty or corrupt run folder: one line, exit 2
        fail(one_line(e))
    means = {
        f"select{n}": round(statistics.mean(r[f"select{n}"]["test_return"] for r in runs), 1)
        for n in args.select
    }
    print(
        json.dumps(
            {
                "runs": runs,
                "mean_test_return": means,
                "episodes": args.episodes,
                "machine": machine(),
                "date": time.strftime("%Y-%m-%d"),
            }
        )
    )


if __name__ == "__main__":
    main()
