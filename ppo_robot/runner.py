"""The training runner: owns the loop. Steps envs, times, logs, evaluates, checkpoints.

PPO only acts and updates (`ppo_robot/ppo.py`); storage holds the batch
(`ppo_robot/storage.py`); envs come from `envs.make`.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from envs.make import make_env
from envs.randomization import Randomization
from ppo_robot.adr_log import adr_fields, adr_row, adr_summary, write_ranges
from ppo_robot.checkpoint import load_checkpoint, save_checkpoint
from ppo_robot.cli import UserError
from ppo_robot.config import TrainConfig
from ppo_robot.networks import Actor, Critic
from ppo_robot.normalizer import ReturnScaler
from ppo_robot.ppo import PPO, UpdateStats
from ppo_robot.progress import Progress
from ppo_robot.stopping import TargetWatch
from ppo_robot.storage import RolloutStorage

log = logging.getLogger(__name__)

STAT_FIELDS = [f.name for f in fields(UpdateStats)]
"""metrics.csv columns of the update's figures: `UpdateStats`'s docstrings say what each is
(`kl`: minibatch KL before each step, what the adaptive learning rate and kl_stop see;
`kl_post`: the batch's KL after the epochs, what beta adapts on)."""
METRIC_FIELDS = [
    "update",  # updates done
    "step",  # env steps (summed over envs) after the update
    "wall_s",  # training wall time so far, resumed runs included
    "steps_per_s",  # this update's collection and update
    "return_mean",  # training episodes that ended during this update's rollout
    "episode_length",
    "success_rate",
    "eval_return",  # deterministic evaluation (every eval_every updates, and the last)
    "eval_success",
    *STAT_FIELDS,
    "rollback",  # 1 where this evaluation sent training back to best.pt
]
"""metrics.csv columns, one row per update; empty where a figure does not apply to a row."""


# Seeds of the periodic evaluation, offset from the run's seed: the eval envs' construction
# and the reset of each evaluation (the same starts every time, so checkpoints compare).
EVAL_ENV_SEED = 10_000
EVAL_RESET_SEED = 20_000


@dataclass
class EvalResult:
    return_mean: float
    return_std: float
    success_rate: float | None
    length_mean: float
    episodes: int


@torch.no_grad()
def evaluate_policy(actor: Actor, env, seed: int) -> EvalResult:
    """Deterministic (mean action) evaluation: one episode per env, run as one batch."""
    n = env.num_envs
    obs, _ = env.reset(seed=seed)
    returns = np.full(n, np.nan)
    lengths = np.zeros(n)
    success = np.zeros(n, dtype=bool)
    has_success = False
    for _ in range(env.task.max_episode_steps if hasattr(env, "task") else 1000):
        action = actor(torch.as_tensor(obs, dtype=torch.float32)).numpy()
        obs, _, _, _, info = env.step(action)
        ep = info.get("episode")
        if ep is not None:
            ids = ep["ids"]
            first = np.isnan(returns[ids])
            returns[ids[first]] = ep["r"][first]
            lengths[ids[first]] = ep["l"][first]
            if "success" in ep:
                has_success = True
                success[ids[first]] = ep["success"][first]
        if not np.isnan(returns).any():
            break
    done = ~np.isnan(returns)
    return EvalResult(
        return_mean=float(np.mean(returns[done])) if done.any() else float("nan"),
        return_std=float(np.std(returns[done])) if done.any() else float("nan"),
        success_rate=float(np.mean(success[done])) if has_success else None,
        length_mean=float(np.mean(lengths[done])) if done.any() else float("nan"),
        episodes=int(done.sum()),
    )


def selection_key(ev: EvalResult) -> tuple[float, float]:
    """How evaluations rank for best.pt: success rate first, then return."""
    return (ev.success_rate or 0.0, ev.return_mean)


class Runner:
    def __init__(self, cfg: TrainConfig, cfg_dict: dict[str, Any], rand: Randomization) -> None:
        self.cfg = cfg
        self.cfg_dict = cfg_dict
        self.rand = rand
        self.run_dir = Path(cfg.run_dir)
        torch.set_num_threads(cfg.torch_threads)
        self.update_threads = cfg.update_threads or usable_cpus()
        torch.manual_seed(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed)

        e, p = cfg.env, cfg.ppo
        self.env = make_env(e, e.num_envs, cfg.seed, rand)
        self.eval_env = make_env(e, cfg.eval_episodes, cfg.seed + EVAL_ENV_SEED, rand)
        self.adr = getattr(self.env, "adr", None)
        """Adaptive ranges (`envs.adr_sampler`). Evaluations run over the hard bounds, not
        inside the ranges reached so far: those grow, so a later evaluation would be harder
        than an earlier one and best.pt, rollback and stop_at would favour the early policy
        trained on the narrowest ranges."""
        if self.adr is not None:
            self.eval_env.adr.freeze(self.adr.state.envelope())
        self.metric_fields = METRIC_FIELDS + adr_fields(self.env)
        obs_dim = self.env.single_observation_space.shape[0]
        act_dim = self.env.single_action_space.shape[0]
        self.actor = Actor(
            obs_dim, act_dim, list(p.hidden), p.activation, p.init_log_std, p.obs_clip, p.ortho_init
        )
        self.critic = Critic(obs_dim, list(p.hidden), p.activation, p.ortho_init)
        self.batch = p.n_steps * e.num_envs
        self.n_updates = max(1, math.ceil(cfg.total_steps / self.batch))
        self.ppo = PPO(self.actor, self.critic, p, self.n_updates)
        self.storage = RolloutStorage(p.n_steps, e.num_envs, obs_dim, act_dim)
        self.scaler = ReturnScaler(e.num_envs, p.gamma) if p.norm_reward else None
        self.update = 0
        self.step = 0
        self.wall_before = 0.0
        self.best_key: tuple = (-math.inf, -math.inf)
        self.last_eval: EvalResult | None = None
        self.best_eval: EvalResult | None = None
        self.rollbacks = 0
        self.watch = TargetWatch(cfg.stop_at)
        self.obs: np.ndarray | None = None
        # only now that everything built: bad input leaves no run folder behind
        (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- checkpoints

    def state(self) -> dict[str, Any]:
        env_state = self.env.snapshot() if hasattr(self.env, "snapshot") else None
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "ppo": self.ppo.state_dict(),
            "update": self.update,
            "step": self.step,
            "wall_s": self.wall_before + (time.perf_counter() - self._t0),
            "best_key": self.best_key,
            "torch_rng": torch.get_rng_state(),
            "gen_rng": self.gen.get_state(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "env_state": env_state,
            "obs": self.obs,
            "eval": vars(self.last_eval) if self.last_eval else None,
            "best_eval": vars(self.best_eval) if self.best_eval else None,
            "rollbacks": self.rollbacks,
        }

    def save(self, name: str) -> Path:
        path = self.run_dir / "checkpoints" / name
        save_checkpoint(path, self.state(), self.actor, self.cfg, self.cfg_dict, self.rand)
        return path

    def restore(self, path: str) -> None:
        ck = load_checkpoint(path)
        if ck["model"]["obs_dim"] != self.actor.normalizer.mean.numel():
            raise UserError(f"resume: checkpoint {path} is for another observation size")
        t = ck["train"]
        self._load_learner(ck, t["ppo"]["updates_done"])
        self.update, self.step = t["update"], t["step"]
        self.wall_before = t["wall_s"]
        self.best_key = tuple(t["best_key"])
        self.best_eval = EvalResult(**t["best_eval"]) if t.get("best_eval") else None
        self.last_eval = EvalResult(**t["eval"]) if t.get("eval") else None
        self.rollbacks = t.get("rollbacks", 0)
        torch.set_rng_state(t["torch_rng"])
        self.gen.set_state(t["gen_rng"])
        if self.scaler and t["scaler"]:
            self.scaler.load_state_dict(t["scaler"])
        if t["env_state"] is not None and hasattr(self.env, "restore"):
            self.env.restore(t["env_state"])
            self.obs = t["obs"]
        self._carry_history(Path(path))

    def _carry_history(self, ck_path: Path) -> None:
        """Give run_dir the resumed run's history, so that rollback_drop and the summary find
        the run's best.pt there and metrics.csv goes on from the checkpoint's update. The
        history is read beside the checkpoint (RUN/checkpoints/X.pt: RUN/checkpoints/best.pt,
        RUN/metrics.csv); run_dir may be RUN itself (later rows are then dropped)."""
        ckdir = ck_path.resolve().parent
        best_src, best_dst = ckdir / "best.pt", self.run_dir / "checkpoints" / "best.pt"
        if self.best_eval is not None and not _is_best_of(best_src, self.best_key):
            log.warning(
                "resume: no best.pt beside %s holds its best evaluation; best.pt starts anew "
                "at the next evaluation",
                ck_path,
            )
            self.best_key, self.best_eval = (-math.inf, -math.inf), None
        elif self.best_eval is not None and best_src != best_dst.resolve():
            tmp = best_dst.with_name("best.pt.tmp")
            shutil.copyfile(best_src, tmp)
            os.replace(tmp, best_dst)
        rows = []
        src_metrics = ckdir.parent / "metrics.csv"
        if ckdir.name == "checkpoints" and src_metrics.is_file():
            with open(src_metrics, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["update"]) <= self.update]
        tmp = self.run_dir / "metrics.csv.tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(
                f, fieldnames=self.metric_fields, restval="", extrasaction="ignore"
            )
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.run_dir / "metrics.csv")

    def _should_roll_back(self, ev: EvalResult) -> bool:
        best = self.best_eval
        drop = self.cfg.rollback_drop
        return bool(
            drop and best and ev.return_mean < best.return_mean - drop * abs(best.return_mean)
        )

    def _roll_back(self) -> None:
        """Go on from best.pt's policy, critic and optimizer (observation normalizer and adapted
        learning rate included). Steps, the learning-rate schedule's count of updates,
        environments, random streams and the return scaler go on."""
        best = load_checkpoint(self.run_dir / "checkpoints" / "best.pt")
        self._load_learner(best, self.ppo.updates_done)
        self.rollbacks += 1

    def _load_learner(self, ck: dict[str, Any], updates_done: int) -> None:
        """A checkpoint's actor, critic and optimizer, with the schedule at `updates_done`."""
        self.actor.load_state_dict(ck["actor"])
        self.critic.load_state_dict(ck["train"]["critic"])
        self.ppo.load_state_dict({**ck["train"]["ppo"], "updates_done": updates_done})

    # ---------------------------------------------------------------- loop

    def train(self) -> dict[str, Any]:
        cfg = self.cfg
        self._t0 = time.perf_counter()
        if cfg.resume:
            self.restore(cfg.resume)
        if self.obs is None:
            self.obs, _ = self.env.reset(seed=cfg.seed)
        from torch.utils.tensorboard import SummaryWriter

        tb = SummaryWriter(str(self.run_dir / "tb"))
        # a resumed run_dir already holds the header and the run's rows (_carry_history)
        mode = "a" if cfg.resume else "w"
        mfile = open(self.run_dir / "metrics.csv", mode, newline="")  # noqa: SIM115 - closed in finally
        writer = csv.DictWriter(mfile, fieldnames=self.metric_fields)
        if not cfg.resume:
            writer.writeheader()
        progress = Progress(self.n_updates * self.batch, enabled=cfg.progress)
        episodes: tuple[list[np.ndarray], ...] = ([], [], [])  # returns, success, lengths
        status = "completed"
        self._last_good: Path | None = None
        try:
            while self.update < self.n_updates:
                t_upd = time.perf_counter()
                self._collect(*episodes)
                try:
                    stats = self._update_step()
                except FloatingPointError as e:
                    status = f"stopped: non-finite loss ({e}); kept the last good checkpoint"
                    log.error(status)
                    break
                row = self._row(stats, t_upd, *episodes)
                for ep in episodes:
                    ep.clear()
                final = self.update == self.n_updates
                stop = None
                if (cfg.eval_every and self.update % cfg.eval_every == 0) or final:
                    stop = self._evaluate_step(row)
                writer.writerow({k: _fmt(row.get(k)) for k in self.metric_fields})
                mfile.flush()
                for k, v in row.items():
                    if isinstance(v, int | float) and v is not None and k != "update":
                        tb.add_scalar(f"train/{k}", v, self.step)
                progress.update(self.batch, row)
                if stop:  # the stopping evaluation's row is written, as every other
                    status = stop
                    break
        finally:
            progress.close()
            mfile.close()
            tb.close()
        if status == "completed" or status.startswith("stopped: target"):
            self._last_good = self.save("last.pt")
        write_ranges(self.env, self.run_dir)
        return self._summary(status)

    def _update_step(self) -> UpdateStats:
        """One PPO update on the collected batch (on `update_threads`); FloatingPointError
        where the parameters became non-finite."""
        torch.set_num_threads(self.update_threads)
        try:
            stats = self.ppo.update(self.storage, self.gen)
        finally:
            torch.set_num_threads(self.cfg.torch_threads)
        if not all(torch.isfinite(q).all() for q in self.ppo.params):
            raise FloatingPointError("parameters became NaN/inf")
        self.storage.clear()
        self.update += 1
        self.step += self.batch
        return stats

    def _row(self, stats, t_upd: float, ep_returns, ep_success, ep_lengths) -> dict[str, Any]:
        """The metrics.csv row of the update just done (evaluation columns added later)."""
        return {
            "update": self.update,
            "step": self.step,
            "wall_s": round(self.wall_before + time.perf_counter() - self._t0, 3),
            "steps_per_s": round(self.batch / max(time.perf_counter() - t_upd, 1e-9), 1),
            "return_mean": _mean(ep_returns),
            "episode_length": _mean(ep_lengths),
            "success_rate": _mean(ep_success),
            **{k: getattr(stats, k) for k in STAT_FIELDS},
            **adr_row(self.env),
        }

    def _evaluate_step(self, row: dict[str, Any]) -> str | None:
        """Periodic evaluation: best.pt, rollback, last.pt; the stop status where stop_at's
        target has held for its evaluations, else None."""
        cfg = self.cfg
        ev = evaluate_policy(self.actor, self.eval_env, cfg.seed + EVAL_RESET_SEED)
        self.last_eval = ev
        row["eval_return"] = ev.return_mean
        row["eval_success"] = ev.success_rate
        key = selection_key(ev)
        if key > self.best_key:
            self.best_key = key
            self.best_eval = ev
            self.save("best.pt")
        elif self._should_roll_back(ev):
            log.warning(
                "step %d: evaluation %.6g fell more than %g below the best %.6g: "
                "rolled back to best.pt",
                self.step,
                ev.return_mean,
                cfg.rollback_drop,
                self.best_eval.return_mean,
            )
            self._roll_back()
            row["rollback"] = 1
        self._last_good = self.save("last.pt")
        if cfg.keep_checkpoints:  # written atomically, as best.pt and last.pt
            self.save(f"step_{self.step:09d}.pt")
        if self.watch.observe(ev.success_rate, ev.return_mean, self.step):
            return f"stopped: target reached ({cfg.stop_at.describe()})"
        return None

    def _summary(self, status: str) -> dict[str, Any]:
        last_good = self._last_good
        wall = self.wall_before + time.perf_counter() - self._t0
        best, last = self.best_eval, self.last_eval
        best_path = self.run_dir / "checkpoints" / "best.pt"
        if status.startswith("stopped: target"):  # the kept checkpoint: the one that met it
            best, best_path = last, last_good
        return {
            "status": status,
            "total_steps": self.step,
            "wall_s": round(wall, 2),
            "steps_per_s": round(self.step / max(wall, 1e-9), 1),
            # figures of the checkpoint named below: the best periodic evaluation (stopped
            # at the target: the evaluation that completed it)
            "return_mean": best.return_mean if best else None,
            "success_rate": best.success_rate if best else None,
            "checkpoint": str(best_path)
            if best_path.exists()
            else (str(last_good) if last_good else None),
            "last_checkpoint": str(last_good) if last_good else None,
            "last_return_mean": last.return_mean if last else None,
            "last_success_rate": last.success_rate if last else None,
            "updates": self.update,
            "rollbacks": self.rollbacks,
            **self.watch.summary(),
            **({"adr": adr_summary(self.env)} if self.adr is not None else {}),
            "run_dir": str(self.run_dir),
        }

    def _collect(self, ep_returns, ep_success, ep_lengths) -> None:
        p = self.cfg.ppo
        obs = self.obs
        for _ in range(p.n_steps):
            o = torch.from_numpy(obs).float()
            self.actor.normalizer.update(o)
            action, logp, value, mu, sigma = self.ppo.act(o)
            obs, rew, term, trunc, info = self.env.step(action.numpy())
            r = torch.from_numpy(rew).float()
            done = torch.from_numpy(term | trunc)
            if self.scaler is not None:
                r = self.scaler(r, done)
            if trunc.any():
                # Truncation is not termination: bootstrap from the final observation.
                idx = np.flatnonzero(trunc)
                final = torch.from_numpy(info["final_obs"][idx]).float()
                r[idx] += p.gamma * self.ppo.value(final)
            self.storage.add(o, action, logp, value, r, done.float(), mu, sigma)
            ep = info.get("episode")
            if ep is not None:
                ep_returns.append(ep["r"])
                ep_lengths.append(ep["l"])
                if "success" in ep:
                    ep_success.append(ep["success"])
        self.obs = obs
        self.storage.last_obs.copy_(torch.from_numpy(obs))
        last_v = self.ppo.value(self.storage.last_obs)
        self.storage.compute_returns(last_v, p.gamma, p.lam)


def _is_best_of(path: Path, best_key: tuple) -> bool:
    """Whether `path` is a readable checkpoint saved as the best with this selection key."""
    if not path.is_file():
        return False
    try:
        ck = load_checkpoint(path)
    except UserError:
        return False
    return tuple(ck["train"].get("best_key", ())) == tuple(best_key)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's cpuset)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _mean(chunks: list[np.ndarray]) -> float | None:
    if not chunks:
        return None
    return float(np.mean(np.concatenate([np.asarray(c, dtype=np.float64) for c in chunks])))


def _fmt(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v
