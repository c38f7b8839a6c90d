"""One trainer's run for `benchmarks/time_to_score.py`, in a process of its own (so that no
trainer inherits another's threads, seeds or memory): train on the clock, then evaluate every
snapshot with the shared `Evaluator`. Ends with one JSON line: the curve of
(wall_s, steps, score) and the trainer's configuration.

    python -m benchmarks.tts_worker --trainer sb3 --task furuta --seed 0 --budget-s 60 \
        --every-s 10 --episodes 100 [--set key=value ...]   # --set: ours only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.tts_common import Clock, Evaluator, ScoreTask  # noqa: E402
from benchmarks.tts_trainers import TRAINERS  # noqa: E402


def run(trainer: str, task: ScoreTask, seed: int, budget_s: float, every_s: float,
        episodes: int, overrides: list[str]) -> dict:  # fmt: skip
    clock = Clock(budget_s, every_s)
    out = TRAINERS[trainer](task, seed, clock, overrides)
    train_wall = clock.wall()
    t = time.perf_counter()
    evaluator = Evaluator(task, episodes)
    curve = [(s.wall_s, s.steps, evaluator.score(s.policy)) for s in clock.snapshots]
    last = clock.snapshots[-1] if clock.snapshots else None
    return {
        "trainer": trainer,
        "task": task.name,
        "seed": seed,
        "status": out["status"],
        "train_wall_s": round(train_wall, 2),
        "steps": last.steps if last else 0,
        "steps_per_s": round(last.steps / max(last.wall_s, 1e-9), 1) if last else 0.0,
        "eval_s": round(time.perf_counter() - t, 2),
        "curve": curve,
        "config": out["config"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trainer", required=True, choices=sorted(TRAINERS))
    ap.add_argument("--task", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget-s", type=float, required=True)
    ap.add_argument("--every-s", type=float, required=True)
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--set", nargs="*", default=[], dest="overrides")
    a = ap.parse_args()
    task = ScoreTask.named(a.task)
    summary = run(a.trainer, task, a.seed, a.budget_s, a.every_s, a.episodes, a.overrides)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
