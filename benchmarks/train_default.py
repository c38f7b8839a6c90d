"""The default robot, trained exactly as a user would: `python -m ppo_robot.train` with no
arguments but the run folder and seed (it stops once evaluation holds its `stop_at` target),
then `ppo_robot.evaluate` (100 episodes) of the kept checkpoint on nominal dynamics and under
`randomization=default`. Beside each run, in the same process, raw `mujoco.rollout` of the
same robot (256 envs, 2 threads, random controls: the physics limit) gives the wall time
physics alone needs for `--budget-steps` control steps; each run's `time_to_target_s`
(from the command's start) is reported against it. Plots the learning curve to docs/. Ends
with one JSON line.

    python benchmarks/train_default.py [--seeds 0 1 2] [--out docs/learning_curve_furuta.png]
    python benchmarks/train_default.py --seeds 0 -- ppo.epochs=3   # overrides for the train
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._util import ROOT, cli, machine, plot_curves  # noqa: E402

BUDGET_STEPS = 2_300_000
"""Control steps whose raw physics time is the budget (issue 23)."""


def raw_rollout_rate(num_envs: int = 256, nthread: int = 2, steps: int = 200) -> float:
    """Control steps (summed over envs) per second of raw `mujoco.rollout` of the default
    robot: median of 3 windows of `steps` control steps."""
    from omegaconf import OmegaConf

    from benchmarks.engine import setup_rollout
    from envs.make import robot_spec
    from envs.task import RobotTask
    from ppo_robot.paths import config_dir

    env_cfg = OmegaConf.load(config_dir() / "env" / "furuta.yaml").env
    run, n, close = setup_rollout(num_envs, nthread, steps, 0, RobotTask(robot_spec(env_cfg)))
    rates = []
    for _ in range(3):
        t = time.perf_counter()
        run()
        rates.append(n / (time.perf_counter() - t))
    close()
    return statistics.median(rates)


def train_one(seed: int, run_dir: Path, overrides: list[str]) -> dict:
    """One default train and the evaluations of its kept checkpoint."""
    load = os.getloadavg()[0]
    t = cli("ppo_robot.train", f"run_dir={run_dir}", f"seed={seed}", "progress=false", *overrides)
    ev = {
        r: cli(
            "ppo_robot.evaluate",
            f"checkpoint={t['checkpoint']}",
            "episodes=100",
            f"randomization={r}",
            f"out_dir={run_dir}",
        )
        for r in ("none", "furuta/default")  # a bare "default" is every robot's name
    }
    rows = list(csv.DictReader((run_dir / "metrics.csv").read_text().splitlines()))
    curve = [
        (float(r["step"]), float(r["wall_s"]), float(r["eval_success"]))
        for r in rows
        if r["eval_success"]
    ]
    first = next((i for i, c in enumerate(curve) if c[2] >= 0.95), None)
    return {
        "seed": seed,
        "status": t["status"],
        "time_to_target_s": t["time_to_target_s"],
        "target_step": t["target_step"],
        "wall_s": t["wall_s"],
        "total_steps": t["total_steps"],
        "steps_per_s": t["steps_per_s"],
        "success_nominal": ev["none"]["success_rate"],
        "success_default_randomization": ev["furuta/default"]["success_rate"],
        # after evaluation first reached 0.95: the lowest evaluation until the run ended
        "min_success_after_first_095": None if first is None else min(c[2] for c in curve[first:]),
        "load_1min": [round(load, 2), round(os.getloadavg()[0], 2)],
        "curve": curve,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "learning_curve_furuta.png"))
    ap.add_argument("--budget-steps", type=int, default=BUDGET_STEPS)
    ap.add_argument("overrides", nargs="*", help="extra key=value for ppo_robot.train")
    args = ap.parse_args()
    runs, raw = [], []
    with tempfile.TemporaryDirectory() as d:
        for seed in args.seeds:  # raw physics before each run and after the last: same load
            raw.append(raw_rollout_rate())
            runs.append(train_one(seed, Path(d) / f"s{seed}", args.overrides))
        raw.append(raw_rollout_rate())
    rate = statistics.median(raw)
    budget_s = args.budget_steps / rate
    for r in runs:
        ttt = r["time_to_target_s"]
        r["time_to_target_vs_physics"] = None if ttt is None else round(ttt / budget_s, 3)
    reached = [r["time_to_target_s"] for r in runs if r["time_to_target_s"] is not None]
    _plot(runs, Path(args.out))
    print(
        json.dumps(
            {
                "runs": [{k: v for k, v in r.items() if k != "curve"} for r in runs],
                "raw_rollout_steps_per_s": round(rate, 1),
                "raw_rollout_runs": [round(x, 1) for x in raw],
                "physics_budget_s": round(budget_s, 2),
                "budget_steps": args.budget_steps,
                "median_time_to_target_s": _median_or_none(reached, len(runs)),
                "overrides": args.overrides,
                "plot": args.out,
                "machine": machine(),
                "date": time.strftime("%Y-%m-%d"),
            }
        )
    )


def _median_or_none(reached: list[float], n: int) -> float | None:
    """Median over n runs where a run that never reached the target counts as above every one
    that did; None where the median itself is such a run."""
    m = statistics.median([*reached, *[float("inf")] * (n - len(reached))])
    return None if m == float("inf") else m


def _plot(runs: list[dict], out: Path) -> None:
    plot_curves(
        [
            ([c[1] for c in r["curve"]], [c[2] for c in r["curve"]], {"label": f"seed {r['seed']}"})
            for r in runs
        ],
        out,
        xlabel="wall time (s), 2-core CPU",
        ylabel="evaluation success rate (randomization=default)",
        title="Furuta swing-up: python -m ppo_robot.train",
        target=0.9,
        ylim=(-0.02, 1.02),
    )


if __name__ == "__main__":
    main()
