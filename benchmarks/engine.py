"""Env-steps per second of the batched engine against its physics limit and Gymnasium.

On HalfCheetah-v5 (Gymnasium's model, frame_skip 5), in one process, side by side:

  rollout      raw `mujoco.rollout` on the same per-env models, batch and frame skip,
               with precomputed random controls: the physics limit
  ours         `BatchedEnv` stepping random actions (observations, rewards, autoreset)
  randomized   `BatchedEnv` with domain randomization (body mass, geom friction, dof
               damping; control latency, action noise), resampled at every reset
  sync_vector  `gymnasium.vector.SyncVectorEnv` of `HalfCheetah-v5` envs

Each figure is the median over repeats of a window of steps, the contenders taking turns;
the engine windows are one whole episode long (1000 steps), so every env also resets once
in each. Ends with one JSON line on stdout (the table goes to stderr).

    python -m benchmarks.engine [--num-envs 64] [--nthread 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

import gymnasium
import mujoco
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from mujoco import rollout

from envs.batched import BatchedEnv
from envs.gym_tasks import HalfCheetah
from envs.randomization import parse

GYM_ID = "HalfCheetah-v5"

RANDOMIZATION = {
    "params": {
        "mass": {"field": "body_mass", "targets": ["*"], "low": 0.8, "high": 1.2},
        "friction": {
            "field": "geom_friction",
            "targets": ["*"],
            "index": [0],
            "low": 0.7,
            "high": 1.3,
        },
        "damping": {
            "field": "dof_damping",
            "targets": ["*"],
            "dist": "log_uniform",
            "low": 0.5,
            "high": 2.0,
        },
    },
    "latency_s": {"dist": "uniform", "low": 0.0, "high": 0.02},
    "action_noise_std": 0.05,
}
"""Model fields, latency and action noise: Gymnasium tasks have no sensor layout, so no
observation noise or sensor bias."""


Runner = tuple[Callable[[], None], int, Callable[[], None]]
"""(run one window, env steps in it, close)."""


def setup_rollout(n: int, nthread: int, steps: int, seed: int, task=None) -> Runner:
    """Raw `mujoco.rollout` of `task` (default HalfCheetah; any engine task: load_model,
    n_substeps, action bounds), n models, one control step's substeps per call."""
    task = task or HalfCheetah()
    nominal = task.load_model()
    models = [task.load_model() for _ in range(n)]
    S = task.n_substeps(nominal)
    full = mujoco.mjtState.mjSTATE_FULLPHYSICS
    data = mujoco.MjData(nominal)
    mujoco.mj_forward(nominal, data)
    state0 = np.zeros(mujoco.mj_stateSize(nominal, full))
    mujoco.mj_getState(nominal, data, state0, full)
    state = np.tile(state0, (n, 1))
    out = np.zeros((n, S, state0.size))
    sens = np.zeros((n, S, nominal.nsensordata))
    rng = np.random.default_rng(seed)
    actions = rng.uniform(task.action_low, task.action_high, (steps, n, task.act_dim))
    controls = np.ascontiguousarray(np.repeat(actions[:, :, None, :], S, axis=2))
    datas = [mujoco.MjData(nominal) for _ in range(nthread)]
    pool = rollout.Rollout(nthread=nthread)

    def run() -> None:
        for t in range(steps):
            pool.rollout(
                models,
                datas,
                state,
                controls[t],
                skip_checks=True,
                nstep=S,
                state=out,
                sensordata=sens,
            )
            state[:] = out[:, -1]

    return run, steps * n, pool.close


def setup_batched(n: int, nthread: int, steps: int, seed: int, randomized: bool) -> Runner:
    rand = parse(RANDOMIZATION) if randomized else None
    env = BatchedEnv(HalfCheetah(), n, seed=seed, nthread=nthread, randomization=rand)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    actions = rng.uniform(env.task.action_low, env.task.action_high, (steps, n, env.task.act_dim))

    def run() -> None:
        for t in range(steps):
            env.step(actions[t])

    return run, steps * n, env.close


def setup_sync_vector(n: int, steps: int, seed: int) -> Runner:
    env = SyncVectorEnv(
        [lambda: gymnasium.make(GYM_ID) for _ in range(n)],
        autoreset_mode=AutoresetMode.SAME_STEP,
    )
    env.reset(seed=seed)
    low, high = env.single_action_space.low, env.single_action_space.high
    actions = np.random.default_rng(seed).uniform(low, high, (steps, n, low.size))

    def run() -> None:
        for t in range(steps):
            env.step(actions[t])

    return run, steps * n, env.close


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-envs", type=int, default=64)
    p.add_argument("--nthread", type=int, default=2)
    p.add_argument("--steps", type=int, default=1000, help="steps per engine window")
    p.add_argument("--sync-steps", type=int, default=200, help="steps per SyncVectorEnv window")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    n, k = a.num_envs, a.nthread

    runners = {
        "rollout": setup_rollout(n, k, a.steps, a.seed),
        "ours": setup_batched(n, k, a.steps, a.seed, randomized=False),
        "randomized": setup_batched(n, k, a.steps, a.seed, randomized=True),
        "sync_vector": setup_sync_vector(n, a.sync_steps, a.seed),
    }
    times: dict[str, list[float]] = {name: [] for name in runners}
    for rep in range(a.repeats + 1):  # the first round warms up
        # Round robin, so that a slow patch of a shared machine hits every contender.
        for name, (run, _, _) in runners.items():
            t0 = time.perf_counter()
            run()
            if rep:
                times[name].append(time.perf_counter() - t0)
    rates = {
        name: steps / statistics.median(times[name]) for name, (_, steps, _) in runners.items()
    }
    for _, _, close in runners.values():
        close()
    for name, r in rates.items():
        print(f"{name:>12}: {r:12,.0f} env-steps/s", file=sys.stderr)

    result = {
        "env_steps_per_s": round(rates["ours"]),
        "rollout_steps_per_s": round(rates["rollout"]),
        "sync_vector_steps_per_s": round(rates["sync_vector"]),
        "randomized_steps_per_s": round(rates["randomized"]),
        "ratio_vs_rollout": round(rates["ours"] / rates["rollout"], 3),
        "ratio_vs_sync_vector": round(rates["ours"] / rates["sync_vector"], 2),
        "randomization_cost": round(1.0 - rates["randomized"] / rates["ours"], 3),
        "num_envs": n,
        "nthread": k,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
