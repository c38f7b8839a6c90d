"""How often does a HalfCheetah policy flip onto its back, and what does a flip cost?

A HalfCheetah run that scores low at 1M steps is rarely slow: its deterministic policy runs
as fast as the others and, in some episodes, pitches past vertical and finishes the episode
on its back (docs/benchmarks.md). This evaluates each checkpoint deterministically on
`--episodes` starts, exactly as `ppo_robot.evaluate` does (same environment and reset seed,
so the mean matches its `return_mean`), and splits the episodes by whether the torso pitch
(observation 1, the root's y rotation) ever exceeded `--pitch` radians. Ends with one JSON
line: per checkpoint the return, the number of flipped episodes, the mean return of upright
and of flipped episodes and the median step of the flip.

    python benchmarks/halfcheetah_flips.py runs/hc0/checkpoints/best.pt [more.pt ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._util import machine  # noqa: E402
from envs.make import make_env  # noqa: E402
from ppo_robot.checkpoint import build_actor, load_checkpoint  # noqa: E402
from ppo_robot.cli import UserError, fail  # noqa: E402
from ppo_robot.runner import evaluate_policy  # noqa: E402

PITCH_OBS = 1  # HalfCheetah-v5 observation: [rootz, rooty, ...] (x position excluded)


class FlipWatch:
    """The evaluation env, seen step by step: each episode's return and the step at which
    its torso first pitched past `pitch` (evaluate_policy runs the episodes unchanged)."""

    def __init__(self, env, pitch: float) -> None:
        self.env, self.pitch = env, pitch
        n = env.num_envs
        self.returns, self.flip_step = np.zeros(n), np.full(n, -1)
        self.done, self.t = np.zeros(n, dtype=bool), 0

    def __getattr__(self, name: str):
        return getattr(self.env, name)

    def reset(self, *args, **kwargs):
        self.returns[:], self.flip_step[:], self.done[:], self.t = 0.0, -1, False, 0
        return self.env.reset(*args, **kwargs)

    def step(self, action):
        obs, reward, term, trunc, info = self.env.step(action)
        self.t += 1
        self.returns += np.where(self.done, 0.0, reward)
        self.done |= np.asarray(term) | np.asarray(trunc)  # an ended env shows its successor
        up = np.abs(obs[:, PITCH_OBS]) > self.pitch
        self.flip_step[up & (self.flip_step < 0) & ~self.done] = self.t
        return obs, reward, term, trunc, info


def flips(path: Path, episodes: int, seed: int, pitch: float) -> dict:
    ck = load_checkpoint(path)  # UserError naming the file if missing or corrupt
    env_cfg = OmegaConf.create(ck["env"])
    if env_cfg.name != "halfcheetah":
        raise UserError(f"{path}: a checkpoint of '{env_cfg.name}', not halfcheetah")
    watch = FlipWatch(make_env(env_cfg, episodes, seed, None), pitch)
    ev = evaluate_policy(build_actor(ck), watch, seed)  # as ppo_robot.evaluate does
    returns, flip_step = watch.returns, watch.flip_step
    if not np.isclose(returns.mean(), ev.return_mean, rtol=1e-6):  # the watch saw other steps
        raise RuntimeError(f"{path}: returns {returns.mean()} against {ev.return_mean}")
    f = flip_step >= 0
    return {
        "checkpoint": str(path),
        "step": ck["train"]["step"],
        "return": round(ev.return_mean, 1),
        "flipped": int(f.sum()),
        "episodes": episodes,
        "upright_return": round(float(returns[~f].mean()), 1) if (~f).any() else None,
        "flipped_return": round(float(returns[f].mean()), 1) if f.any() else None,
        "flip_step_median": float(np.median(flip_step[f])) if f.any() else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoints", type=Path, nargs="+")
    ap.add_argument("--episodes", type=int, default=150)
    ap.add_argument("--seed", type=int, default=12345, help="ppo_robot.evaluate's default")
    ap.add_argument("--pitch", type=float, default=1.6, help="radians, just past vertical")
    a = ap.parse_args()
    if a.episodes < 1:
        fail(f"--episodes must be >= 1, got {a.episodes}")
    torch.set_num_threads(1)
    runs = []
    for p in a.checkpoints:
        try:
            r = flips(p, a.episodes, a.seed, a.pitch)
        except UserError as e:
            fail(str(e))
        runs.append(r)
        print(
            f"{p}: {r['return']:.0f}, flipped {r['flipped']}/{r['episodes']}, "
            f"upright {r['upright_return']}, flipped {r['flipped_return']}",
            file=sys.stderr,
            flush=True,
        )
    flipped = sum(r["flipped"] for r in runs)
    upright = [r["upright_return"] for r in runs if r["upright_return"] is not None]
    out = {
        "runs": runs,
        "return_mean": round(statistics.mean(r["return"] for r in runs), 1),
        "flipped_fraction": round(flipped / (a.episodes * len(runs)), 4),
        "runs_with_flips": sum(r["flipped"] > 0 for r in runs),
        "upright_return_mean": round(statistics.mean(upright), 1) if upright else None,
        "machine": machine(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
