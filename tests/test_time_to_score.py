"""benchmarks/time_to_score.py: the reach-and-hold rule, bad input, and (slow) every trainer's
path end to end through the real script with tiny budgets: ours, SB3 (defaults), RSL-RL on
the batched engine each train (the RL Zoo's configs exist for the MuJoCo tasks only: skipped), get snapshots on the clock and are
scored by the shared evaluation. The budgets are seconds, so what is asserted is structure
(keys, steps taken, finite scores, the plot), never a time or a score."""

from __future__ import annotations

import math

import pytest

from benchmarks.tts_common import ScoreTask, held_at
from tests.conftest import last_json, run_cli

FURUTA = ScoreTask.named("furuta")


def test_score_must_hold_at_the_next_evaluation():
    spike = [(10.0, 100, 0.2), (20.0, 200, 0.97), (30.0, 300, 0.80), (40.0, 400, 0.96)]
    assert held_at(FURUTA, spike) is None  # reached twice, never held
    held = [*spike, (50.0, 500, 0.95)]
    assert held_at(FURUTA, held) == (40.0, 400)
    assert held_at(FURUTA, [(5.0, 50, 1.0)]) is None  # no next evaluation to hold at
    assert held_at(FURUTA, [(5.0, 50, math.nan), (6.0, 60, 1.0)]) is None


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--task", "walker"], "--task walker"),
        (["--peers", "ours", "cleanrl"], "--peers: unknown cleanrl"),
        (["--budget-s", "-5"], "--budget-s must be > 0"),
        (["--episodes", "0"], "--episodes must be >= 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, names):
    p = run_cli("benchmarks.time_to_score", *args, timeout=60)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and names in lines[0], p.stderr


def _race(tmp_path, task: str, peers: list[str], episodes: int) -> dict:
    p = run_cli(
        "benchmarks.time_to_score",
        f"--task={task}",
        "--seeds",
        "0",
        "--budget-s=1",
        "--every-s=0.5",
        f"--episodes={episodes}",
        "--peers",
        *peers,
        f"--out={tmp_path / task}.png",
        timeout=300,
        check=True,
    )
    out = last_json(p.stdout)
    assert (tmp_path / f"{task}.png").stat().st_size > 0
    for key in ("task", "metric", "target", "budget_s", "episodes", "results", "best_peer",
                "ours_speedup_vs_best_peer", "machine", "date"):  # fmt: skip
        assert key in out
    return out


def _trained_and_scored(result: dict) -> None:
    (run,) = result["runs"]
    assert run["train_steps"] > 0 and run["evaluations"] >= 1
    assert run["best_score"] is not None and math.isfinite(run["best_score"])
    assert run["reached"] is False and run["wall_s"] is None  # 1 s cannot reach the score


@pytest.mark.slow
def test_every_peer_trains_and_is_scored(tmp_path):
    out = _race(tmp_path, "furuta", ["ours", "sb3", "sb3_zoo", "rsl_rl"], episodes=2)
    assert out["metric"] == "success" and out["target"] == 0.95
    for trainer in ("ours", "sb3", "rsl_rl"):
        _trained_and_scored(out["results"][trainer])
        assert out["results"][trainer]["median_wall_s"] is None
    assert "no sb3_zoo configuration for furuta" in out["results"]["sb3_zoo"]["skipped"]
    assert out["ours_speedup_vs_best_peer"] is None  # nobody reached the score
