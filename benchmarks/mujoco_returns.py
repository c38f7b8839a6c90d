"""Returns at 1M environment steps on Gymnasium's MuJoCo tasks, against published PPO.

Trains each task with its shipped config (`python -m ppo_robot.train env=TASK`, 1M steps),
then evaluates the best checkpoint deterministically (`ppo_robot.evaluate`, 10 episodes).
Ends with one JSON line: per task and seed the return and wall time, and the published
reference.

    python benchmarks/mujoco_returns.py [--tasks halfcheetah hopper walker2d ant] [--seeds 0 1 2]
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

PUBLISHED = {  # best published PPO figures at 1M steps
    "halfcheetah": (5800, "SB3 zoo 5,819"),
    "hopper": (2600, "Tianshou 2,609"),
    "walker2d": (3600, "Tianshou 3,588"),
    "ant": (1400, "SB3 zoo 1,327"),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", nargs="+", default=list(PUBLISHED))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=1_000_000)
    args = ap.parse_args()
    out: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as d:
        for task in args.tasks:
            runs = []
            for seed in args.seeds:
                run = Path(d) / f"{task}-{seed}"
                t = cli(
                    "ppo_robot.train",
                    f"env={task}",
                    f"seed={seed}",
                    f"total_steps={args.steps}",
                    f"run_dir={run}",
                    "progress=false",
                )
                ev = cli(
                    "ppo_robot.evaluate",
                    f"checkpoint={t['checkpoint']}",
                    "episodes=10",
                    f"out_dir={run}",
                )
                runs.append(
                    {
                        "seed": seed,
                        "return": round(ev["return_mean"], 1),
                        "wall_s": t["wall_s"],
                        "steps": t["total_steps"],
                    }
                )
                print(
                    f"{task} seed {seed}: {ev['return_mean']:.0f} in {t['wall_s']:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
            target, source = PUBLISHED.get(task, (None, ""))
            mean = statistics.mean(r["return"] for r in runs)
            out[task] = {
                "runs": runs,
                "mean_return": round(mean, 1),
                "target": target,
                "reference": source,
                "met": target is not None and mean >= target,
            }
    print(
        json.dumps(
            {
                "steps": args.steps,
                "tasks": out,
                "machine": machine(),
                "date": time.strftime("%Y-%m-%d"),
            }
        )
    )


if __name__ == "__main__":
    main()
