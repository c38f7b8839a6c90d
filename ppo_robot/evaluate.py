"""`python -m ppo_robot.evaluate checkpoint=PATH episodes=N [randomization=G] [reality=PATH]`

Deterministic (mean action) evaluation of a checkpoint, all episodes run as one batch on
the batched engine. Ends with one JSON line: return mean and std, success rate, episode
length (also saved as eval_summary.json beside the checkpoint, or in out_dir).
`log=PATH` also writes the first episode as an MCAP rollout log in the deploy format, so
`firmware_bridge.replay` compares simulated and real runs with one tool.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ppo_robot.cli import UserError, run_app, typed_config, write_summary
from ppo_robot.config import EvalConfig


def evaluate(raw: Any) -> dict[str, Any]:
    import torch

    from envs.make import make_env
    from envs.randomization import RandomizationError, load, parse
    from envs.spec import SpecError
    from ppo_robot.adr_log import checkpoint_adr_state
    from ppo_robot.checkpoint import build_actor, check_robot_layout, load_checkpoint
    from ppo_robot.runner import evaluate_policy

    cfg: EvalConfig = typed_config(raw, EvalConfig)
    ck = load_checkpoint(cfg.checkpoint)
    actor = build_actor(ck)
    env_cfg = OmegaConf.create(ck["env"])
    try:
        rand = load(cfg.reality) if cfg.reality else parse(cfg.randomization)
        env = make_env(env_cfg, int(cfg.episodes), int(cfg.seed), rand)
    except (RandomizationError, SpecError, ValueError) as e:
        raise UserError(str(e)) from None
    spec = getattr(getattr(env, "task", None), "spec", None)
    if ck.get("robot") is not None and spec is not None:
        check_robot_layout(cfg.checkpoint, ck, spec)
    adr = getattr(env, "adr", None)
    if adr is not None:  # inside the ranges the checkpoint's training reached (else nominal)
        state = checkpoint_adr_state(ck)
        adr.freeze(state if state and state["names"] == list(adr.state.names) else None)
    torch.set_num_threads(1)
    ev = evaluate_policy(actor, env, int(cfg.seed))
    summary: dict[str, Any] = {
        "checkpoint": str(cfg.checkpoint),
        "env": env_cfg.name,
        "episodes": ev.episodes,
        "return_mean": ev.return_mean,
        "return_std": ev.return_std,
        "success_rate": ev.success_rate,
        "episode_length": ev.length_mean,
        "randomization": (cfg.randomization or {}).get("name") if not cfg.reality else None,
        "reality": cfg.reality,
    }
    if cfg.log:
        from firmware_bridge.sim.episodes import write_sim_episode

        summary["log"] = str(
            write_sim_episode(
                ck, actor, env_cfg, rand, int(cfg.seed), Path(cfg.log), checkpoint=cfg.checkpoint
            )
        )
    out_dir = cfg.out_dir or str(Path(cfg.checkpoint).resolve().parent)
    write_summary(summary, out_dir, name="eval_summary.json")
    return summary


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    run_app("evaluate", evaluate, EvalConfig)


if __name__ == "__main__":
    main()
