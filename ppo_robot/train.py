"""`python -m ppo_robot.train [key=value ...]`: train a policy (Hydra app, configs/train.yaml).

With no arguments it trains the default robot (Furuta pendulum) under randomization
`default`. Ends with one JSON line (also saved as run_dir/summary.json).
"""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import OmegaConf

from ppo_robot.cli import RunFault, UserError, run_app, typed_config, write_summary
from ppo_robot.config import EnvConfig, PPOConfig, TrainConfig


def train(cfg: Any) -> dict[str, Any]:
    from envs.randomization import RandomizationError, parse
    from envs.spec import SpecError
    from ppo_robot.runner import Runner

    typed: TrainConfig = typed_config(cfg, TrainConfig)
    if typed.resume:  # a missing or corrupt checkpoint is refused before run_dir is touched
        from ppo_robot.checkpoint import load_checkpoint

        load_checkpoint(typed.resume)
    cfg_dict = OmegaConf.to_container(cfg, resolve=True)
    try:
        rand = parse(cfg_dict.get("randomization"))
        runner = Runner(typed, cfg_dict, rand)
    except (RandomizationError, SpecError, ValueError) as e:
        raise UserError(str(e)) from None
    OmegaConf.save(cfg, runner.run_dir / "config.yaml", resolve=True)
    summary = runner.train()
    write_summary(summary, runner.run_dir)
    if summary["status"].startswith("stopped: non-finite"):
        raise RunFault(summary["status"])
    return summary


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    run_app("train", train, TrainConfig, groups={"env": EnvConfig, "ppo": PPOConfig})


if __name__ == "__main__":
    main()
