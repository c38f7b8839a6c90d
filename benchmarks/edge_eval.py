"""Policies against the edge plants, many episodes each, on the batched engine.

For each randomization and seed: `python -m ppo_robot.train randomization=<r> seed=<s>
stop_at=null total_steps=<n>` (or `--runs DIR...` already trained), then for each reality of
`configs/realities/<robot>/edge/` and the nominal plant `python -m ppo_robot.evaluate
checkpoint=<best.pt> reality=<file> episodes=<k>` (deterministic, the evaluation the train
itself uses). `benchmarks/transfer.py --set edge` runs the same plants through `sim_robot`
and `deploy` on the real clock, a few episodes each; this gives the many-episode figure
beside it. Writes a JSON file, a Markdown table (policy x reality) and, for the adaptive
runs, a PNG of the ranges against training steps; ends with one JSON line.

    python benchmarks/edge_eval.py --randomizations default furuta/adaptive --seeds 0 1 2 \
        --total-steps 6000000 [--episodes 100] [--out docs/edge_eval]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._util import ROOT, cli, machine  # noqa: E402

REALITIES = ROOT / "configs" / "realities"


def edge_set(robot: str) -> list[Path]:
    """The robot's nominal plant, then its edge plants."""
    return [
        REALITIES / robot / "nominal.yaml",
        *sorted((REALITIES / robot / "edge").glob("*.yaml")),
    ]


def train(robot: str, rand: str, seed: int, total_steps: int, work: Path) -> dict:
    run = work / f"{robot}-{rand.replace('/', '-')}-s{seed}"
    args = [f"env={robot}", f"run_dir={run}", f"randomization={rand}", f"seed={seed}"]
    args.append("progress=false")
    t = cli("ppo_robot.train", *args, "stop_at=null", f"total_steps={total_steps}")
    print(f"trained {rand} seed {seed}: {t['wall_s']:.0f} s", file=sys.stderr, flush=True)
    return {"randomization": rand, "seed": seed, "run_dir": str(run), "train": t}


def from_run(run: Path) -> dict:
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    s = json.loads((run / "summary.json").read_text())
    rand = (cfg.get("randomization") or {}).get("name", "?")
    return {"randomization": rand, "seed": cfg.get("seed"), "run_dir": str(run), "train": s}


def evaluate(ckpt: str, realities: list[Path], episodes: int) -> dict[str, float]:
    out = {}
    for reality in realities:
        e = cli("ppo_robot.evaluate", f"checkpoint={ckpt}", f"reality={reality}",
                f"episodes={episodes}", f"out_dir={Path(ckpt).parent / 'edge_eval'}")  # fmt: skip
        out[reality.stem] = float(e["success_rate"])
    return out


def ranges_png(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    adaptive = [r for r in runs if "adr" in r["train"]]
    if not adaptive:
        return
    names = list(adaptive[0]["train"]["adr"]["ranges"])
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.0), squeeze=False)
    for r in adaptive:
        text = (Path(r["run_dir"]) / "metrics.csv").read_text().splitlines()
        rows = list(csv.DictReader(text))
        step = np.array([float(x["step"]) for x in rows]) / 1e6
        for ax, n in zip(axes[0], names, strict=True):
            lo = [float(x[f"adr.{n}.low"]) for x in rows]
            hi = [float(x[f"adr.{n}.high"]) for x in rows]
            ax.fill_between(step, lo, hi, alpha=0.25, label=f"seed {r['seed']}")
            b = r["train"]["adr"]["bounds"][n]
            ax.axhline(b[0], color="k", lw=0.6, ls=":")
            ax.axhline(b[1], color="k", lw=0.6, ls=":")
            ax.set_title(n, fontsize=9)
            ax.set_xlabel("env steps (M)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("adaptive ranges during training (dotted: hard bounds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown(runs: list[dict], realities: list[Path]) -> str:
    cols = [p.stem for p in realities]
    head = "| policy | train s | " + " | ".join(cols) + " | edge mean |"
    lines = [head, "|" + " --- |" * (len(cols) + 3)]
    for r in runs:
        s = r["success"]
        edge = np.mean([s[c] for c in cols[1:]])
        cells = " | ".join(f"{100 * s[c]:.0f}" for c in cols)
        name = f"{r['randomization']} s{r['seed']}"
        lines.append(f"| {name} | {r['train']['wall_s']:.0f} | {cells} | {100 * edge:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--robot", default="furuta")
    ap.add_argument("--randomizations", nargs="+", default=["default", "furuta/adaptive"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--total-steps", type=int, default=6_000_000)
    ap.add_argument("--runs", nargs="*", type=Path, help="trained run dirs instead of training")
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--work", type=Path, default=Path("/tmp/edge_eval"))
    ap.add_argument("--out", type=Path, help="write OUT.json, OUT.md and OUT_ranges.png")
    args = ap.parse_args()
    t0 = time.time()
    if args.runs:
        runs = [from_run(r) for r in args.runs]
    else:
        jobs = [(r, s) for r in args.randomizations for s in args.seeds]
        runs = [train(args.robot, r, s, args.total_steps, args.work) for r, s in jobs]
    realities = edge_set(args.robot)
    for r in runs:
        r["success"] = evaluate(r["train"]["checkpoint"], realities, args.episodes)
    table = markdown(runs, realities)
    print(table, file=sys.stderr)
    result = {"benchmark": "edge_eval", "date": time.strftime("%Y-%m-%d"),
              "machine": machine(), "robot": args.robot, "episodes": args.episodes,
              "runs": runs}  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
        args.out.with_suffix(".md").write_text(table + "\n")
        ranges_png(runs, args.out.with_name(args.out.name + "_ranges.png"))
    means = {
        f"{r['randomization']} s{r['seed']}": round(
            float(np.mean([r["success"][p.stem] for p in realities[1:]])), 3
        )
        for r in runs
    }
    print(json.dumps({"benchmark": "edge_eval", "edge_mean": means,
                      "wall_s": round(time.time() - t0, 1)}))  # fmt: skip


if __name__ == "__main__":
    main()
