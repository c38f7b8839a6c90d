"""Gymnasium's MuJoCo tasks on the batched engine against Gymnasium's own envs, step for step
(observations, rewards, terminations, truncations, final observations, episode returns, across
autoresets); reset draws against Gymnasium's reset RNG; the fallback's info format; the registry.
"""

from __future__ import annotations

import copy

import gymnasium
import mujoco
import numpy as np
import pytest

from envs.batched import BatchedEnv
from envs.gym_tasks import (
    BATCHED_TASKS,
    GYM_TASKS,
    GymFallbackEnv,
    HalfCheetah,
    make_gym_env,
)
from envs.randomization import parse

TOL = 1e-8
N = 2  # envs per batch: two, on two threads, so rows and threads are not one to one


def _sync(g, env: BatchedEnv, i: int) -> np.ndarray:
    """Put Gymnasium env `g` where batched env `i` starts its episode, as its reset would."""
    qpos = env.state[i, env._qpos_at : env._qvel_at].copy()
    qvel = env.state[i, env._qvel_at : env._qvel_at + env.nv].copy()
    g.reset()
    mujoco.mj_resetData(g.model, g.data)  # what reset() does before reset_model()
    g.set_state(qpos, qvel)
    return g._get_obs()


@pytest.mark.parametrize("gym_id", sorted(BATCHED_TASKS))
def test_matches_gymnasium_step_for_step(gym_id: str) -> None:
    task = BATCHED_TASKS[gym_id]()
    env = BatchedEnv(task, N, seed=11, nthread=2)
    ref = [gymnasium.make(gym_id).unwrapped for _ in range(N)]
    obs, _ = env.reset(seed=11)
    np.testing.assert_allclose(obs, [_sync(g, env, i) for i, g in enumerate(ref)], 0, TOL)

    rng = np.random.default_rng(12)
    ref_steps, ref_return = np.zeros(N, dtype=int), np.zeros(N)
    terminations = truncations = 0
    steps = 1005  # past a time limit (Reacher: 20 of them)
    for t in range(steps):
        action = rng.uniform(task.action_low, task.action_high, (N, task.act_dim))
        obs, reward, terminated, truncated, info = env.step(action)
        done = terminated | truncated
        for i, g in enumerate(ref):
            g_obs, g_rew, g_term, _, _ = g.step(action[i].copy())
            ref_steps[i] += 1
            ref_return[i] += g_rew
            g_trunc = ref_steps[i] >= task.max_episode_steps and not g_term
            where = f"{gym_id} step {t} env {i}"
            assert (terminated[i], truncated[i]) == (g_term, g_trunc), where
            np.testing.assert_allclose(reward[i], g_rew, 0, TOL, err_msg=where)
            last = info["final_obs"][i] if done[i] else obs[i]
            np.testing.assert_allclose(last, g_obs, 0, TOL, err_msg=where)
            if done[i]:
                ep = info["episode"]
                k = int(np.flatnonzero(ep["ids"] == i)[0])
                assert ep["l"][k] == ref_steps[i], where
                np.testing.assert_allclose(ep["r"][k], ref_return[i], 0, 1e-6, err_msg=where)
                # The new episode's first observation, from the same initial state.
                np.testing.assert_allclose(obs[i], _sync(g, env, i), 0, TOL, err_msg=where)
                ref_steps[i], ref_return[i] = 0, 0.0
                terminations += int(g_term)
                truncations += int(g_trunc)
        assert info.keys() == ({"final_obs", "_final_obs", "episode"} if done.any() else set())
    assert truncations + terminations > 0, "no episode ended: autoreset is untested"
    if gym_id in ("Hopper-v5", "Walker2d-v5", "InvertedPendulum-v5", "InvertedDoublePendulum-v5"):
        assert terminations > 0, f"{gym_id}: random actions never fell over"
    env.close()


@pytest.mark.parametrize("gym_id", sorted(BATCHED_TASKS))
def test_one_env_reset_draws_gymnasium_reset(gym_id: str) -> None:
    env = BatchedEnv(BATCHED_TASKS[gym_id](), 1, seed=0, nthread=1)
    ref = gymnasium.make(gym_id)
    for seed in (3, 4):
        obs, _ = env.reset(seed=seed)
        g_obs, _ = ref.reset(seed=seed)
        np.testing.assert_array_equal(obs[0], g_obs)


class _ShortCheetah(HalfCheetah):
    max_episode_steps = 20


def test_randomized_models_are_the_ones_stepped() -> None:
    """Each episode runs on the env's freshly perturbed model, as one MjData on it would."""
    rand = parse(
        {
            "params": {
                "mass": {"field": "body_mass", "targets": ["*"], "low": 0.5, "high": 2.0},
                "friction": {"field": "geom_friction", "index": [0], "low": 0.3, "high": 1.5},
            }
        }
    )
    n = 3
    env = BatchedEnv(_ShortCheetah(), n, seed=0, nthread=2, randomization=rand)
    env.reset(seed=0)
    rng = np.random.default_rng(1)
    masses = []
    for _ in range(2):  # two episodes: the second on models resampled at the autoreset
        models = [copy.copy(m) for m in env.models]
        masses.append([m.body_mass[1] for m in models])
        ref = []
        for i, m in enumerate(models):
            d = mujoco.MjData(m)
            d.qpos[:] = env.state[i, env._qpos_at : env._qvel_at]
            d.qvel[:] = env.state[i, env._qvel_at : env._qvel_at + env.nv]
            mujoco.mj_forward(m, d)
            ref.append(d)
        for _ in range(_ShortCheetah.max_episode_steps):
            action = rng.uniform(-1, 1, (n, 6))
            obs, _, _, truncated, info = env.step(action)
            last = info["final_obs"] if truncated.any() else obs
            for i, (m, d) in enumerate(zip(models, ref, strict=True)):
                d.ctrl[:] = action[i]
                mujoco.mj_step(m, d, nstep=5)
                np.testing.assert_array_equal(last[i], np.concatenate([d.qpos[1:], d.qvel]))
    assert len({*masses[0], *masses[1]}) == 2 * n
    env.close()


def _info_format(env, steps: int, rng: np.random.Generator) -> list[dict]:
    """Step random actions, check BatchedEnv's info contract each step; return the infos."""
    n = env.num_envs
    low, high = env.single_action_space.low, env.single_action_space.high
    obs, _ = env.reset(seed=1)
    lengths, returns, seen = np.zeros(n, dtype=int), np.zeros(n), []
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(rng.uniform(low, high, (n, low.size)))
        assert obs.shape == (n, env.single_observation_space.shape[0]) and obs.dtype == np.float64
        assert reward.shape == (n,) and terminated.dtype == bool and truncated.dtype == bool
        assert not (terminated & truncated).any()
        lengths += 1
        returns += reward
        done = terminated | truncated
        if not done.any():
            assert info == {}
            continue
        assert set(info) == {"final_obs", "_final_obs", "episode"}
        assert info["final_obs"].shape == obs.shape and info["final_obs"].dtype == np.float64
        np.testing.assert_array_equal(info["_final_obs"], done)
        np.testing.assert_array_equal(info["final_obs"][~done], obs[~done])
        # Same-step autoreset: where an episode ended, obs is the next one's first.
        assert not np.isclose(info["final_obs"][done], obs[done]).all(axis=1).any()
        ep = info["episode"]
        assert set(ep) == {"r", "l", "ids"}
        np.testing.assert_array_equal(ep["ids"], np.flatnonzero(done))
        np.testing.assert_array_equal(ep["l"], lengths[done])
        np.testing.assert_allclose(ep["r"], returns[done], rtol=1e-12)
        lengths[done], returns[done] = 0, 0.0
        seen.append(info)
    return seen


@pytest.mark.parametrize("gym_id", ["InvertedPendulum-v5", "Reacher-v5"])
def test_fallback_presents_batched_info_format(gym_id: str) -> None:
    """Terminations (InvertedPendulum) and time limits (Reacher, 50 steps), both envs."""
    steps = 60
    fallback = GymFallbackEnv(gym_id, 3, seed=0)
    batched = BatchedEnv(BATCHED_TASKS[gym_id](), 3, seed=0, nthread=2)
    assert fallback.single_observation_space == batched.single_observation_space
    assert fallback.single_action_space == batched.single_action_space
    infos = {
        "fallback": _info_format(fallback, steps, np.random.default_rng(0)),
        "batched": _info_format(batched, steps, np.random.default_rng(0)),
    }
    for name, seen in infos.items():
        assert seen, f"{name}: no episode ended in {steps} steps"
        if gym_id == "Reacher-v5":  # every env truncated at 50 steps, and only then
            assert [list(i["episode"]["l"]) for i in seen] == [[50, 50, 50]], name
    fallback.close()
    batched.close()


def test_fallback_seed_and_clipping() -> None:
    a = GymFallbackEnv("InvertedPendulum-v5", 2, seed=5)
    b = GymFallbackEnv("InvertedPendulum-v5", 2, seed=5)
    np.testing.assert_array_equal(a.reset()[0], b.reset()[0])
    high = a.single_action_space.high
    out_a = a.step(np.full((2, 1), 10.0 * high))  # clipped to the action space ...
    out_b = b.step(np.full((2, 1), high))  # ... so the same as the bound
    np.testing.assert_array_equal(out_a[0], out_b[0])


def test_make_gym_env_registry() -> None:
    assert set(GYM_TASKS.values()) <= set(gymnasium.registry)
    for name, gym_id in GYM_TASKS.items():
        if gym_id in BATCHED_TASKS:
            env = make_gym_env(name, 2, seed=0, nthread=1)
            assert isinstance(env, BatchedEnv) and env.task.name == gym_id
        else:
            env = make_gym_env(name, 1, seed=0)
            assert isinstance(env, GymFallbackEnv) and env.gym_id == gym_id
        ref = gymnasium.make(gym_id)
        assert env.single_observation_space.shape == ref.observation_space.shape, name
        assert env.single_action_space == ref.action_space, name
        ref.close()
        env.close()
    with pytest.raises(ValueError, match="'cartpole'.*halfcheetah.*reacher"):
        make_gym_env("cartpole", 1)
