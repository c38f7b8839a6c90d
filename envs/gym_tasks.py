"""Gymnasium's v5 MuJoCo tasks on the batched engine, a fallback for the rest, and the registry.

Each `GymTask` reproduces one of Gymnasium's v5 environments from the physics state, for
the whole batch at once: Gymnasium's own MJCF asset, its default v5 parameters (frame
skip, reward weights, healthy ranges, reset noise, positions left out of the observation),
its reset distribution, observation, reward and termination. Stepped by `BatchedEnv`, a
trajectory is the one Gymnasium's single env computes (tests/test_gym_tasks.py checks it
step for step). Two departures, both the engine's contract: actions are clipped to the
action space before the control cost, and `truncated` is never set with `terminated`.

Resets draw with Gymnasium's calls (`uniform` over qpos, then `uniform` or
`standard_normal` over qvel), batched over the resetting envs: one env reset with seed s
starts where `gymnasium.make(id).reset(seed=s)` does; several draw the same distribution.

Ant-v5 and Humanoid-v5 observe `cfrc_ext`, which Gymnasium computes by an extra
`mj_rnePostConstraint` after each `mj_step`, from the contacts of the last RK4 stage: a
rollout does not compute it, and an acceleration sensor would make MuJoCo compute it at the
first stage instead, which differs. They run in `GymFallbackEnv`, Gymnasium's own
`SyncVectorEnv` behind the same interface and info format as `BatchedEnv`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import ClassVar

import gymnasium
import mujoco
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv

from envs.batched import BatchedEnv
from envs.task import StepView, Task

GYM_ASSETS = Path(gymnasium.__file__).parent / "envs" / "mujoco" / "assets"
"""Gymnasium's MJCF files, the ones its v5 environments load."""

GYM_TASKS: dict[str, str] = {
    "halfcheetah": "HalfCheetah-v5",
    "hopper": "Hopper-v5",
    "walker2d": "Walker2d-v5",
    "ant": "Ant-v5",
    "humanoid": "Humanoid-v5",
    "inverted_pendulum": "InvertedPendulum-v5",
    "inverted_double_pendulum": "InvertedDoublePendulum-v5",
    "swimmer": "Swimmer-v5",
    "reacher": "Reacher-v5",
}
"""Config name (configs/env) -> Gymnasium id."""


class GymTask(Task):
    """A Gymnasium v5 MuJoCo task: its MJCF, frame skip and reset noise; action = ctrl."""

    gym_id: ClassVar[str]
    xml_file: ClassVar[str]
    frame_skip: ClassVar[int]
    reset_noise_scale: ClassVar[float]
    normal_qvel_noise: ClassVar[bool] = False
    """Reset qvel noise: scale * standard_normal (True) or uniform(-scale, scale) (False)."""
    max_episode_steps = 1000

    def __init__(self) -> None:
        self._model = mujoco.MjModel.from_xml_path(str(GYM_ASSETS / self.xml_file))
        m = self._model
        self.name = self.gym_id
        self.act_dim = m.nu
        self.action_low = m.actuator_ctrlrange[:, 0].astype(np.float64)
        self.action_high = m.actuator_ctrlrange[:, 1].astype(np.float64)
        self.init_qpos = m.qpos0.copy()
        self.init_qvel = np.zeros(m.nv)
        # The same product Gymnasium's `MujocoEnv.dt` computes.
        self.dt = m.opt.timestep * self.frame_skip
        self.bind(m)
        self.obs_dim = self._obs_dim(m)

    def _obs_dim(self, m: mujoco.MjModel) -> int:
        return m.nq + m.nv

    def load_model(self) -> mujoco.MjModel:
        return copy.copy(self._model)

    def n_substeps(self, model: mujoco.MjModel) -> int:
        return self.frame_skip

    def ctrl(self, action: np.ndarray, last_ctrl: np.ndarray) -> np.ndarray:
        return action

    def initial_state(self, model, rng, n):
        s = self.reset_noise_scale
        qpos = self.init_qpos + rng.uniform(low=-s, high=s, size=(n, model.nq))
        if self.normal_qvel_noise:
            qvel = self.init_qvel + s * rng.standard_normal((n, model.nv))
        else:
            qvel = self.init_qvel + rng.uniform(low=-s, high=s, size=(n, model.nv))
        return qpos, qvel

    def terminated(self, v: StepView) -> np.ndarray:
        return np.zeros(v.qpos.shape[0], dtype=bool)


class _Locomotion(GymTask):
    """Planar runners and the swimmer: forward reward from x before and after, ctrl cost."""

    forward_reward_weight: ClassVar[float] = 1.0
    ctrl_cost_weight: ClassVar[float]
    skipped_qpos: ClassVar[int] = 1
    """exclude_current_positions_from_observation: the leading qpos (x, or x and y) left out."""
    clip_qvel: ClassVar[float | None] = None

    def _obs_dim(self, m: mujoco.MjModel) -> int:
        return m.nq + m.nv - self.skipped_qpos

    def observe(self, v: StepView) -> np.ndarray:
        qvel = (
            v.qvel if self.clip_qvel is None else np.clip(v.qvel, -self.clip_qvel, self.clip_qvel)
        )
        return np.concatenate([v.qpos[:, self.skipped_qpos :], qvel], axis=1)

    def _forward_minus_ctrl(self, v: StepView) -> tuple[np.ndarray, np.ndarray]:
        x_velocity = (v.qpos[:, 0] - v.qpos_prev[:, 0]) / self.dt
        ctrl_cost = self.ctrl_cost_weight * np.sum(np.square(v.action), axis=1)
        return self.forward_reward_weight * x_velocity, ctrl_cost

    def reward(self, v: StepView) -> np.ndarray:
        forward, ctrl_cost = self._forward_minus_ctrl(v)
        return forward - ctrl_cost


class HalfCheetah(_Locomotion):
    gym_id = "HalfCheetah-v5"
    xml_file = "half_cheetah.xml"
    frame_skip = 5
    ctrl_cost_weight = 0.1
    reset_noise_scale = 0.1
    normal_qvel_noise = True


class Swimmer(_Locomotion):
    gym_id = "Swimmer-v5"
    xml_file = "swimmer.xml"
    frame_skip = 4
    ctrl_cost_weight = 1e-4
    reset_noise_scale = 0.1
    skipped_qpos = 2


class _Hopping(_Locomotion):
    """Hopper and Walker2d: healthy reward while upright, terminate when not."""

    ctrl_cost_weight = 1e-3
    reset_noise_scale = 5e-3
    clip_qvel = 10.0
    healthy_reward: ClassVar[float] = 1.0
    healthy_z_range: ClassVar[tuple[float, float]]
    healthy_angle_range: ClassVar[tuple[float, float]]

    def is_healthy(self, v: StepView) -> np.ndarray:
        z, angle = v.qpos[:, 1], v.qpos[:, 2]
        lo_z, hi_z = self.healthy_z_range
        lo_a, hi_a = self.healthy_angle_range
        return (lo_z < z) & (z < hi_z) & (lo_a < angle) & (angle < hi_a)

    def reward(self, v: StepView) -> np.ndarray:
        forward, ctrl_cost = self._forward_minus_ctrl(v)
        return forward + self.is_healthy(v) * self.healthy_reward - ctrl_cost

    def terminated(self, v: StepView) -> np.ndarray:
        return ~self.is_healthy(v)


class Hopper(_Hopping):
    gym_id = "Hopper-v5"
    xml_file = "hopper.xml"
    frame_skip = 4
    healthy_state_range = (-100.0, 100.0)
    healthy_z_range = (0.7, float("inf"))
    healthy_angle_range = (-0.2, 0.2)

    def is_healthy(self, v: StepView) -> np.ndarray:
        # Gymnasium: state_vector()[2:], i.e. qpos[2:] and all of qvel, inside the range.
        lo, hi = self.healthy_state_range
        state = np.concatenate([v.qpos[:, 2:], v.qvel], axis=1)
        ok_state = np.all((lo < state) & (state < hi), axis=1)
        return ok_state & super().is_healthy(v)


class Walker2d(_Hopping):
    gym_id = "Walker2d-v5"
    xml_file = "walker2d_v5.xml"
    frame_skip = 4
    healthy_z_range = (0.8, 2.0)
    healthy_angle_range = (-1.0, 1.0)


class InvertedPendulum(GymTask):
    gym_id = "InvertedPendulum-v5"
    xml_file = "inverted_pendulum.xml"
    frame_skip = 2
    reset_noise_scale = 0.01

    def observe(self, v: StepView) -> np.ndarray:
        return np.concatenate([v.qpos, v.qvel], axis=1)

    def terminated(self, v: StepView) -> np.ndarray:
        obs = self.observe(v)
        return ~np.isfinite(obs).all(axis=1) | (np.abs(obs[:, 1]) > 0.2)

    def reward(self, v: StepView) -> np.ndarray:
        return (~self.terminated(v)).astype(np.float64)


class InvertedDoublePendulum(GymTask):
    """Reads the tip site and the slider's constraint force as MjData holds them after
    mj_step (this model integrates with RK4: the last stage's values, not the new state's).
    """

    gym_id = "InvertedDoublePendulum-v5"
    xml_file = "inverted_double_pendulum.xml"
    frame_skip = 5
    reset_noise_scale = 0.1
    normal_qvel_noise = True
    healthy_reward = 10.0
    data_fields = ("site_xpos", "qfrc_constraint")

    def _obs_dim(self, m: mujoco.MjModel) -> int:
        return 9

    def observe(self, v: StepView) -> np.ndarray:
        q = v.qpos
        return np.concatenate(
            [
                q[:, :1],
                np.sin(q[:, 1:]),
                np.cos(q[:, 1:]),
                np.clip(v.qvel, -10, 10),
                np.clip(v.fields["qfrc_constraint"], -10, 10)[:, :1],
            ],
            axis=1,
        )

    def terminated(self, v: StepView) -> np.ndarray:
        return v.fields["site_xpos"][:, 0, 2] <= 1

    def reward(self, v: StepView) -> np.ndarray:
        x, y = v.fields["site_xpos"][:, 0, 0], v.fields["site_xpos"][:, 0, 2]
        v1, v2 = v.qvel[:, 1], v.qvel[:, 2]
        dist_penalty = 0.01 * x**2 + (y - 2) ** 2
        vel_penalty = 1e-3 * v1**2 + 5e-3 * v2**2
        alive_bonus = self.healthy_reward * ~self.terminated(v)
        return alive_bonus - dist_penalty - vel_penalty


class Reacher(GymTask):
    """Reads body positions as MjData holds them after mj_step (RK4's last stage)."""

    gym_id = "Reacher-v5"
    xml_file = "reacher.xml"
    frame_skip = 2
    reset_noise_scale = 0.1
    max_episode_steps = 50
    reward_dist_weight = 1.0
    reward_control_weight = 1.0
    goal_radius = 0.2
    data_fields = ("xpos",)

    def bind(self, model: mujoco.MjModel) -> None:
        self._tip = model.body("fingertip").id
        self._target = model.body("target").id

    def _obs_dim(self, m: mujoco.MjModel) -> int:
        return 10

    def initial_state(self, model, rng, n):
        # Gymnasium's order: arm qpos, then goals by rejection in the disc, then qvel.
        qpos = rng.uniform(low=-0.1, high=0.1, size=(n, model.nq)) + self.init_qpos
        goal = np.zeros((n, 2))
        todo = np.arange(n)
        while todo.size:
            g = rng.uniform(low=-self.goal_radius, high=self.goal_radius, size=(todo.size, 2))
            ok = np.linalg.norm(g, axis=1) < self.goal_radius
            goal[todo[ok]] = g[ok]
            todo = todo[~ok]
        qpos[:, -2:] = goal
        qvel = self.init_qvel + rng.uniform(low=-0.005, high=0.005, size=(n, model.nv))
        qvel[:, -2:] = 0
        return qpos, qvel

    def _tip_to_target(self, v: StepView) -> np.ndarray:
        xpos = v.fields["xpos"]
        return xpos[:, self._tip] - xpos[:, self._target]

    def observe(self, v: StepView) -> np.ndarray:
        theta = v.qpos[:, :2]
        return np.concatenate(
            [
                np.cos(theta),
                np.sin(theta),
                v.qpos[:, 2:],
                v.qvel[:, :2],
                self._tip_to_target(v)[:, :2],
            ],
            axis=1,
        )

    def reward(self, v: StepView) -> np.ndarray:
        reward_dist = -np.linalg.norm(self._tip_to_target(v), axis=1) * self.reward_dist_weight
        reward_ctrl = -np.square(v.action).sum(axis=1) * self.reward_control_weight
        return reward_dist + reward_ctrl


BATCHED_TASKS: dict[str, type[GymTask]] = {
    t.gym_id: t
    for t in (
        HalfCheetah,
        Hopper,
        Walker2d,
        Swimmer,
        InvertedPendulum,
        InvertedDoublePendulum,
        Reacher,
    )
}
"""Gymnasium id -> its task on the batched engine."""


class GymFallbackEnv(VectorEnv):
    """Gymnasium's own `SyncVectorEnv` of a task, with `BatchedEnv`'s interface and info.

    Same-step autoreset; `info` holds only `final_obs` (N, obs_dim; the last observation
    where `_final_obs`, else the current one), `_final_obs` and `episode` = {r, l, ids},
    and only when an episode ended. Actions are clipped to the action space, and
    `truncated` is cleared where `terminated` is set, as in `BatchedEnv`.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, gym_id: str, num_envs: int, seed: int = 0) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.gym_id = gym_id
        self.num_envs = n = num_envs
        self._env = SyncVectorEnv(
            [lambda: gymnasium.make(gym_id) for _ in range(n)],
            autoreset_mode=AutoresetMode.SAME_STEP,
        )
        spec = gymnasium.spec(gym_id)
        self.max_episode_steps = spec.max_episode_steps
        obs_dim = int(np.prod(self._env.single_observation_space.shape))
        self.single_observation_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float64)
        self.single_action_space = self._env.single_action_space
        self.observation_space = spaces.Box(-np.inf, np.inf, (n, obs_dim), np.float64)
        self.action_space = self._env.action_space
        self._low = self.single_action_space.low.astype(np.float64)
        self._high = self.single_action_space.high.astype(np.float64)
        self._seed: int | None = seed
        self.steps = np.zeros(n, dtype=np.int64)
        self.returns = np.zeros(n)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is None:
            seed, self._seed = self._seed, None  # the constructor's seed, on first reset only
        obs, _ = self._env.reset(seed=seed, options=options)
        self.steps[:] = 0
        self.returns[:] = 0.0
        return np.asarray(obs, dtype=np.float64), {}

    def step(self, actions: np.ndarray):
        action = np.clip(np.asarray(actions, dtype=np.float64), self._low, self._high)
        obs, reward, terminated, truncated, env_info = self._env.step(action)
        obs = np.asarray(obs, dtype=np.float64)
        reward = np.asarray(reward, dtype=np.float64)
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool) & ~terminated
        self.steps += 1
        self.returns += reward
        done = terminated | truncated
        info: dict = {}
        if done.any():
            ids = np.flatnonzero(done)
            final = obs.copy()
            final[ids] = np.stack([env_info["final_obs"][i] for i in ids])
            info["final_obs"] = final
            info["_final_obs"] = done
            info["episode"] = {
                "r": self.returns[ids].copy(),
                "l": self.steps[ids].copy(),
                "ids": ids,
            }
            self.steps[ids] = 0
            self.returns[ids] = 0.0
        return obs, reward, terminated, truncated, info

    def close(self, **kwargs) -> None:
        self._env.close()


def make_gym_env(name: str, num_envs: int, seed: int = 0, nthread: int = 2) -> VectorEnv:
    """The Gymnasium task a config names: on the batched engine where ported, else a fallback."""
    if name not in GYM_TASKS:
        raise ValueError(f"unknown Gymnasium task '{name}' (known: {', '.join(GYM_TASKS)})")
    gym_id = GYM_TASKS[name]
    task = BATCHED_TASKS.get(gym_id)
    if task is None:
        return GymFallbackEnv(gym_id, num_envs, seed)
    return BatchedEnv(task(), num_envs, seed, nthread)
