"""Wall time to a working policy, ours against the peers, on one machine in one script.

For a task and its score (time_to_score.yaml: the default robot's evaluation success >= 95 %
over 100 deterministic episodes under `randomization=default`; HalfCheetah-v5 return >= 5,000;
Hopper-v5 >= 3,000), each trainer trains for `--budget-s` seconds of wall time in a process of
its own (`benchmarks/tts_worker.py`), one after another, seed by seed: ours (the real runner
with the task's shipped config), Stable-Baselines3 PPO with its defaults (`sb3`) and with the
RL Zoo's tuned hyperparameters (`sb3_zoo`, where the Zoo has them), and RSL-RL's PPO on our
batched engine (`rsl_rl`). Every `--every-s` seconds of its training clock a copy of its policy
is kept; after training, every copy is evaluated by the same code on the same held-out starts
(`tts_common.Evaluator`: `ppo_robot.evaluate`'s evaluation), outside the clock. Reported per
trainer and seed: the wall time and env steps of the first evaluation that reaches the score
and whose next evaluation does too (`held_at`), or "not reached" within the budget. Ends with
one JSON line; `--out` is a PNG of score against wall time for all of them.

    python benchmarks/time_to_score.py --task furuta [--seeds 0 1 2] [--budget-s 300]
        [--every-s 10] [--episodes 100] [--peers ours sb3 sb3_zoo rsl_rl]
        [--out docs/time_to_score_furuta.png] [--curves FILE.json] [--set key=value ...]

`--set` passes overrides to ours only (e.g. a config under test). The peers need the bench
extra (`pip install 'ppo-robot[bench]'`: stable-baselines3, rsl-rl-lib).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._util import ROOT, cli, machine, plot_curves  # noqa: E402
from benchmarks.tts_common import ScoreTask, held_at, load_spec  # noqa: E402

PEERS = ["ours", "sb3", "sb3_zoo", "rsl_rl"]
NEEDS = {"sb3": "stable_baselines3", "sb3_zoo": "stable_baselines3", "rsl_rl": "rsl_rl"}
"""Peer -> the module it needs (from the bench extra)."""


def _fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="furuta")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--budget-s", type=float, default=None, help="default: the task's")
    ap.add_argument("--every-s", type=float, default=None, help="default: the task's")
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--peers", nargs="+", default=PEERS)
    ap.add_argument("--out", default=None, help="PNG (default docs/time_to_score_<task>.png)")
    ap.add_argument("--curves", default=None, help="also write every curve to this JSON file")
    ap.add_argument("--set", nargs="*", default=[], dest="overrides", help="ours only")
    a = ap.parse_args(argv)
    try:
        a.score_task = ScoreTask.named(a.task)
    except KeyError as e:
        _fail(e.args[0])
    bad = [p for p in a.peers if p not in PEERS]
    if bad:
        _fail(f"--peers: unknown {', '.join(bad)} (choose from {', '.join(PEERS)})")
    missing = [p for p in a.peers if p in NEEDS and importlib.util.find_spec(NEEDS[p]) is None]
    if missing:
        _fail(f"--peers {' '.join(missing)} need the bench extra: pip install 'ppo-robot[bench]'")
    for key in ("budget_s", "every_s"):
        value = getattr(a, key) or getattr(a.score_task, key)
        if value <= 0:
            _fail(f"--{key.replace('_', '-')} must be > 0, got {value}")
        setattr(a, key, value)
    if a.episodes < 1:
        _fail(f"--episodes must be >= 1, got {a.episodes}")
    a.out = a.out or str(ROOT / "docs" / f"time_to_score_{a.task}.png")
    return a


def applies(peer: str, task: str) -> bool:
    """Whether time_to_score.yaml configures `peer` for `task` (the Zoo has no robot entry)."""
    cfg = load_spec()["peers"].get(peer, {})
    return peer == "ours" or "tasks" not in cfg or task in cfg["tasks"]


def run_worker(a: argparse.Namespace, trainer: str, seed: int) -> dict:
    args = [
        f"--trainer={trainer}",
        f"--task={a.task}",
        f"--seed={seed}",
        f"--budget-s={a.budget_s}",
        f"--every-s={a.every_s}",
        f"--episodes={a.episodes}",
    ]
    if trainer == "ours" and a.overrides:
        args += ["--set", *a.overrides]
    return cli("benchmarks.tts_worker", *args, timeout=3 * a.budget_s + 900)


def summarize(task: ScoreTask, runs: list[dict]) -> dict:
    """One trainer's runs -> per-seed time to score and the medians over seeds (a seed that
    did not reach it counts as infinitely late, so a median needs most seeds to reach)."""
    rows, walls, steps = [], [], []
    for r in runs:
        hit = held_at(task, [tuple(c) for c in r["curve"]])
        scores = [c[2] for c in r["curve"] if math.isfinite(c[2])]
        rows.append(
            {
                "seed": r["seed"],
                "reached": hit is not None,
                "wall_s": hit[0] if hit else None,
                "steps": hit[1] if hit else None,
                "best_score": max(scores) if scores else None,
                "final_score": r["curve"][-1][2] if r["curve"] else None,
                "evaluations": len(r["curve"]),
                "train_steps": r["steps"],
                "steps_per_s": r["steps_per_s"],
                "status": r["status"],
            }
        )
        walls.append(hit[0] if hit else math.inf)
        steps.append(hit[1] if hit else math.inf)
    mw, ms = statistics.median(walls), statistics.median(steps)
    return {
        "runs": rows,
        "reached": sum(r["reached"] for r in rows),
        "median_wall_s": mw if math.isfinite(mw) else None,
        "median_steps": int(ms) if math.isfinite(ms) else None,
    }


def versus(results: dict, budget_s: float) -> dict:
    """Ours against the fastest peer: the ratio of median wall times; where no peer reached
    the score, budget / ours, a lower bound."""
    ours = (results.get("ours") or {}).get("median_wall_s")
    peers = {k: v["median_wall_s"] for k, v in results.items() if k != "ours" and "runs" in v}
    if ours is None or not peers:
        return {"best_peer": None, "ours_speedup_vs_best_peer": None}
    reached = {k: w for k, w in peers.items() if w is not None}
    if reached:
        best = min(reached, key=reached.get)
        return {"best_peer": best, "ours_speedup_vs_best_peer": round(reached[best] / ours, 2)}
    return {
        "best_peer": None,
        "ours_speedup_vs_best_peer": round(budget_s / ours, 2),
        "speedup_is_lower_bound": True,
    }


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    task = a.score_task
    runs: dict[str, list[dict]] = {p: [] for p in a.peers if applies(p, a.task)}
    for seed in a.seeds:  # seed by seed, so that every trainer sees the same machine state
        for trainer in runs:
            runs[trainer].append(run_worker(a, trainer, seed))
    results = {t: summarize(task, rs) | {"config": rs[0]["config"]} for t, rs in runs.items()}
    for p in a.peers:
        if p not in runs:
            results[p] = {"skipped": f"no {p} configuration for {a.task} (time_to_score.yaml)"}
    _plot(task, runs, Path(a.out))
    if a.curves:
        Path(a.curves).write_text(json.dumps(runs) + "\n")
    out = {
        "task": task.name,
        "metric": task.metric,
        "target": task.target,
        "budget_s": a.budget_s,
        "every_s": a.every_s,
        "episodes": a.episodes,
        "seeds": a.seeds,
        "results": {t: {k: v for k, v in r.items() if k != "config"} for t, r in results.items()},
        **versus(results, a.budget_s),
        "plot": a.out,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(out))


def _plot(task: ScoreTask, runs: dict[str, list[dict]], out: Path) -> None:
    colors = dict(zip(PEERS, ["C0", "C1", "C2", "C3"], strict=True))
    lines = [
        (
            [c[0] for c in r["curve"]],
            [c[2] for c in r["curve"]],
            {"color": colors[trainer], "alpha": 0.8, "label": trainer if i == 0 else None},
        )
        for trainer, rs in runs.items()
        for i, r in enumerate(rs)
    ]
    plot_curves(
        lines,
        out,
        xlabel="training wall time (s), this machine",
        ylabel="evaluation success rate" if task.metric == "success" else "evaluation return",
        title=f"time to score: {task.name} (target {task.target:g})",
        target=task.target,
        size=(7.5, 4.2),
    )


if __name__ == "__main__":
    main()
