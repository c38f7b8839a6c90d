"""Returns at 1M environment steps on Gymnasium's MuJoCo tasks, against published PPO.

Trains each task with its shipped config (`python -m ppo_robot.train env=TASK`, 1M steps),
then evaluates the best checkpoint deterministically on 150 episodes (`ppo_robot.evaluate`;
the SB3 zoo's figures are 150,000-step evaluations, 150 HalfCheetah episodes). Until
2026-11-26 this used 10 episodes, too few where a policy sometimes falls over: a HalfCheetah
checkpoint averaging 5,487 over 150 episodes scored 4,345 over 10 (`--episodes 10`).
Ends with one JSON line: per task and seed the return and wall time, and the published
reference.

    python benchmarks/mujoco_returns.py [--tasks halfcheetah hopper walker2d ant] [--seeds 0 1 2]
    python benchmarks/mujoco_returns.py --jobs 12 --set env.nthread=1   # a many-core machine
    python benchmarks/mujoco_returns.py --tasks halfcheetah --set ppo.lr=1e-4 ...  # a variant

`--jobs N` trains N runs at once (give each `env.nthread=1` on a machine with N cores);
`--set` passes overrides to every training run; `--out FILE` appends each finished run to
FILE as a JSON line, so a run cut short keeps what it finished; `--keep DIR` keeps the run
folders (checkpoints, metrics) in DIR instead of a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._util import cli, machine  # noqa: E402
from ppo_robot.cli import fail  # noqa: E402

PUBLISHED = {  # best published PPO figures at 1M steps
    "halfcheetah": (5800, "SB3 zoo 5,819"),
    "hopper": (2600, "Tianshou 2,609"),
    "walker2d": (3600, "Tianshou 3,588"),
    "ant": (1400, "SB3 zoo 1,327"),
}


def train_and_evaluate(
    task: str, seed: int, steps: int, sets: list[str], work: Path, episodes: int
) -> dict:
    run = work / f"{task}-{seed}"
    t = cli(
        "ppo_robot.train",
        f"env={task}",
        f"seed={seed}",
        f"total_steps={steps}",
        f"run_dir={run}",
        "progress=false",
        *sets,
        timeout=4 * 3600,
    )
    ev = cli(
        "ppo_robot.evaluate",
        f"checkpoint={t['checkpoint']}",
        f"episodes={episodes}",
        f"out_dir={run}",
    )
    return {
        "task": task,
        "seed": seed,
        "return": round(ev["return_mean"], 1),
        "return_std": round(ev["return_std"], 1),
        "wall_s": t["wall_s"],
        "steps": t["total_steps"],
        "episodes": episodes,
        "overrides": sets,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", nargs="+", default=list(PUBLISHED))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--jobs", type=int, default=1, help="training runs at once")
    ap.add_argument("--set", nargs="*", default=[], help="overrides for every training run")
    ap.add_argument("--out", help="append each finished run to this file as a JSON line")
    ap.add_argument("--episodes", type=int, default=150, help="evaluation episodes per run")
    ap.add_argument("--keep", help="keep the run folders here (default: a temporary folder)")
    args = ap.parse_args()
    if args.episodes < 1:  # before hours of training, not after
        fail(f"--episodes must be >= 1, got {args.episodes}")
    jobs = [(task, seed) for task in args.tasks for seed in args.seeds]

    def one(job: tuple[str, int]) -> dict:
        r = train_and_evaluate(*job, args.steps, args.set, work, args.episodes)
        print(f"{r['task']} seed {r['seed']}: {r['return']:.0f} in {r['wall_s']:.0f} s",
              file=sys.stderr, flush=True)  # fmt: skip
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(r) + "\n")
        return r

    with tempfile.TemporaryDirectory() as d:
        work = Path(args.keep or d)
        with ThreadPoolExecutor(args.jobs) as ex:
            runs = list(ex.map(one, jobs))
    out: dict[str, dict] = {}
    for task in args.tasks:
        mine = [r for r in runs if r["task"] == task]
        target, source = PUBLISHED.get(task, (None, ""))
        mean = statistics.mean(r["return"] for r in mine)
        out[task] = {
            "runs": [{k: r[k] for k in ("seed", "return", "wall_s", "steps")} for r in mine],
            "mean_return": round(mean, 1),
            "target": target,
            "reference": source,
            "met": target is not None and mean >= target,
        }
    print(
        json.dumps(
            {
                "steps": args.steps,
                "jobs": args.jobs,
                "overrides": args.set,
                "episodes": args.episodes,
                "tasks": out,
                "machine": machine(),
                "date": time.strftime("%Y-%m-%d"),
            }
        )
    )


if __name__ == "__main__":
    main()
