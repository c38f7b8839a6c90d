"""The default robot, trained exactly as a user would: `python -m ppo_robot.train` with no
arguments but the run folder, then `ppo_robot.evaluate` (100 episodes) on nominal dynamics
and under `randomization=default`. Plots the learning curve to docs/. Ends with one JSON line.

    python benchmarks/train_default.py [--seeds 0] [--out docs/learning_curve_furuta.png]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._util import ROOT, cli, machine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "learning_curve_furuta.png"))
    args = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as d:
        for seed in args.seeds:
            run_dir = Path(d) / f"s{seed}"
            t = cli("ppo_robot.train", f"run_dir={run_dir}", f"seed={seed}", "progress=false")
            ev = {
                r: cli(
                    "ppo_robot.evaluate",
                    f"checkpoint={t['checkpoint']}",
                    "episodes=100",
                    f"randomization={r}",
                    f"out_dir={run_dir}",
                )
                for r in ("none", "default")
            }
            rows = list(csv.DictReader((run_dir / "metrics.csv").read_text().splitlines()))
            runs.append(
                {
                    "seed": seed,
                    "wall_s": t["wall_s"],
                    "total_steps": t["total_steps"],
                    "steps_per_s": t["steps_per_s"],
                    "success_nominal": ev["none"]["success_rate"],
                    "success_default_randomization": ev["default"]["success_rate"],
                    "curve": [
                        (float(r["step"]), float(r["wall_s"]), float(r["eval_success"]))
                        for r in rows
                        if r["eval_success"]
                    ],
                }
            )
    _plot(runs, Path(args.out))
    print(
        json.dumps(
            {
                "runs": [{k: v for k, v in r.items() if k != "curve"} for r in runs],
                "plot": args.out,
                "machine": machine(),
                "date": time.strftime("%Y-%m-%d"),
            }
        )
    )


def _plot(runs: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in runs:
        wall = [c[1] for c in r["curve"]]
        succ = [c[2] for c in r["curve"]]
        ax.plot(wall, succ, marker=".", label=f"seed {r['seed']}")
    ax.set_xlabel("wall time (s), 2-core CPU")
    ax.set_ylabel("evaluation success rate (randomization=default)")
    ax.set_title("Furuta swing-up: python -m ppo_robot.train")
    ax.axhline(0.9, color="gray", lw=0.8, ls="--")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
