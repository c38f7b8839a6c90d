"""What every trainer of `benchmarks/time_to_score.py` shares: the task and its score, the
training clock with its policy snapshots, and the one evaluation all snapshots go through.

The clock runs from the start of a trainer's setup (config, envs, networks, optimizer; module
imports before it are not counted for any trainer) and stops while a snapshot is taken. A
snapshot (a copy of the policy as it is after an update) is taken at the first update after
each `every_s` seconds of that clock. Snapshots are evaluated after training, by `Evaluator`,
so no trainer's clock holds any of this benchmark's evaluation; ours still runs its own
periodic evaluation inside its clock, as `python -m ppo_robot.train` does (it chooses
`best.pt` and rolls back with it), and the peers run none.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SPEC_FILE = Path(__file__).resolve().parent / "time_to_score.yaml"
"""Tasks, scores and every peer's configuration."""


def load_spec() -> dict[str, Any]:
    return yaml.safe_load(SPEC_FILE.read_text())


@dataclass(frozen=True)
class ScoreTask:
    """One task of time_to_score.yaml: its env config, how it is scored, its defaults."""

    name: str
    env: str
    metric: str
    target: float
    gym_id: str
    budget_s: float
    every_s: float

    @classmethod
    def named(cls, name: str) -> ScoreTask:
        tasks = load_spec()["tasks"]
        if name not in tasks:
            raise KeyError(f"--task {name}: not one of {', '.join(tasks)} ({SPEC_FILE.name})")
        return cls(name=name, **tasks[name])

    def reached(self, score: float) -> bool:
        return math.isfinite(score) and score >= self.target


def compose_train(task: ScoreTask, seed: int, run_dir: str, overrides: list[str] = ()) -> Any:
    """The training config `python -m ppo_robot.train env=<task.env> seed=S run_dir=D ...`
    composes (the shipped config of the task): ours trains with it, the peers take its env
    and randomization, the evaluation its env."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from ppo_robot.cli import CONFIG_DIR, register_schema
    from ppo_robot.config import EnvConfig, PPOConfig, TrainConfig

    register_schema("train", TrainConfig, {"env": EnvConfig, "ppo": PPOConfig})
    args = [f"env={task.env}", f"seed={seed}", f"run_dir={run_dir}", "progress=false"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=[*args, *overrides])


def randomization_of(cfg: Any):
    """The composed config's domain randomization as the engine's object."""
    from omegaconf import OmegaConf

    from envs.randomization import parse

    return parse(OmegaConf.to_container(cfg.randomization, resolve=True))


@dataclass
class Snapshot:
    wall_s: float
    """Training wall time when it was taken (the clock above)."""
    steps: int
    """Env steps (summed over envs) the trainer had taken."""
    policy: Any
    """A callable: a (N, obs) float32 tensor of raw observations -> (N, act) actions."""


@dataclass
class Clock:
    """Training wall time for one trainer, and the snapshots taken on it."""

    budget_s: float
    every_s: float
    t0: float = field(default_factory=time.perf_counter)
    paused_s: float = 0.0
    next_s: float = 0.0
    snapshots: list[Snapshot] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.next_s = self.every_s

    def wall(self) -> float:
        return time.perf_counter() - self.t0 - self.paused_s

    def spent(self) -> bool:
        return self.wall() >= self.budget_s

    def after_update(self, steps: int, copy_policy: Callable[[], Any]) -> bool:
        """Called by a trainer after each update: snapshot where one is due (or the budget is
        spent); True where the budget is spent and training must stop."""
        w = self.wall()
        spent = w >= self.budget_s
        if w >= self.next_s or spent:
            self.take(w, steps, copy_policy)
            while self.next_s <= w:
                self.next_s += self.every_s
        return spent

    def take(self, wall_s: float, steps: int, copy_policy: Callable[[], Any]) -> None:
        """A snapshot at `wall_s`, unless the last one already is of this many steps; the
        time it takes is not counted."""
        if self.snapshots and self.snapshots[-1].steps == steps:
            return
        t = time.perf_counter()
        self.snapshots.append(Snapshot(round(wall_s, 3), int(steps), copy_policy()))
        self.paused_s += time.perf_counter() - t


class Evaluator:
    """The one evaluation of every snapshot: `ppo_robot.evaluate`'s (deterministic actions,
    one episode per env in one batch on the batched engine, `evaluate_policy`), on the
    evaluation's held-out seed (configs/evaluate.yaml `seed`) and, for the robot, under the
    task's training randomization (furuta: `randomization=default`)."""

    def __init__(self, task: ScoreTask, episodes: int) -> None:
        from omegaconf import OmegaConf

        from envs.make import make_env
        from ppo_robot.paths import config_dir

        self.task = task
        self.seed = int(OmegaConf.load(config_dir() / "evaluate.yaml").seed)
        cfg = compose_train(task, 0, "unused")
        self.env = make_env(cfg.env, episodes, self.seed, randomization_of(cfg))

    def score(self, policy: Any) -> float:
        import torch

        from ppo_robot.runner import evaluate_policy

        torch.set_num_threads(1)  # as ppo_robot.evaluate
        ev = evaluate_policy(policy, self.env, self.seed)
        value = ev.success_rate if self.task.metric == "success" else ev.return_mean
        return float("nan") if value is None else float(value)


def held_at(task: ScoreTask, curve: list[tuple[float, int, float]]) -> tuple[float, int] | None:
    """(wall_s, steps) of the first evaluation that reaches the score and whose next
    evaluation does too; None where there is none."""
    for (wall, steps, score), (_, _, after) in zip(curve, curve[1:], strict=False):
        if task.reached(score) and task.reached(after):
            return wall, steps
    return None
