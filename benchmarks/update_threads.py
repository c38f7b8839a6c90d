"""The PPO update alone, on HalfCheetah's shapes, with 1 torch thread and with all CPUs
(`update_threads`, default 0 = all: MuJoCo's threads are idle while the update runs).
Also the update with torch's per-tensor Adam instead of the fused kernel the trainer uses
where torch has one (`ppo_robot.ppo.adam`), at 1 thread, and, for a config that recomputes
advantages before each epoch (`recompute_adv`), the update without it. Random batch
contents; medians of 5 updates after a warm-up. Ends with one JSON line.

    python benchmarks/update_threads.py
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._util import machine  # noqa: E402
from ppo_robot.config import PPOConfig  # noqa: E402
from ppo_robot.networks import Actor, Critic  # noqa: E402
from ppo_robot.ppo import PPO  # noqa: E402
from ppo_robot.runner import usable_cpus  # noqa: E402
from ppo_robot.storage import RolloutStorage  # noqa: E402

CASES = {  # name: (hidden, activation, n_steps, num_envs, epochs, minibatches, recompute_adv)
    "ppo=mujoco": ([256, 256], "elu", 64, 64, 10, 8, False),
    "ppo=fast": ([64, 64], "tanh", 64, 64, 5, 4, False),
    "ppo=halfcheetah": ([256, 256], "relu", 256, 2, 20, 8, True),
}


def update_ms(
    hidden, activation, T, N, epochs, minibatches, recompute, threads: int, fused: bool = True
) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = PPOConfig(
        hidden=hidden, activation=activation, n_steps=T, epochs=epochs,
        minibatches=minibatches, lr_schedule="constant", recompute_adv=recompute,
    )  # fmt: skip
    ppo = PPO(Actor(17, 6, hidden, activation), Critic(17, hidden, activation), cfg, 100)
    if not fused:
        ppo.optimizer = torch.optim.Adam(ppo.params, lr=cfg.lr, eps=1e-5, foreach=False)
    s = RolloutStorage(T, N, 17, 6)
    for t in (s.obs, s.last_obs, s.actions, s.mu, s.logp, s.values, s.rewards):
        t.normal_()
    s.sigma.fill_(0.6)
    s.compute_returns(torch.randn(N), cfg.gamma, cfg.lam)
    g = torch.Generator().manual_seed(0)
    ppo.update(s, g)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        ppo.update(s, g)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    cpus = usable_cpus()  # what update_threads=0 gives the trainer
    out = {}
    for name, case in CASES.items():
        one, all_ = update_ms(*case, threads=1), update_ms(*case, threads=cpus)
        unfused = update_ms(*case, threads=1, fused=False)
        out[name] = {
            "samples": case[2] * case[3],
            "update_ms_1_thread": round(one, 1),
            f"update_ms_{cpus}_threads": round(all_, 1),
            "speedup": round(one / all_, 2),
            "update_ms_1_thread_per_tensor_adam": round(unfused, 1),
            "fused_adam_speedup": round(unfused / one, 2),
        }
        if case[6]:  # recompute_adv: what it costs, at 1 thread
            plain = update_ms(*case[:6], False, threads=1)
            out[name]["update_ms_1_thread_without_recompute_adv"] = round(plain, 1)
            out[name]["recompute_adv_overhead"] = round(one / plain - 1.0, 3)
        print(f"{name}: {one:.1f} ms -> {all_:.1f} ms", file=sys.stderr, flush=True)
    print(json.dumps({"cases": out, "machine": machine(), "date": time.strftime("%Y-%m-%d")}))


if __name__ == "__main__":
    main()
