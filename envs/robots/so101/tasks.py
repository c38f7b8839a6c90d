"""The SO-101's task: `reach` (reach a target with the gripper tip and hold it there).

Every episode starts from a random pose and gets a random target in the arm's reachable
workspace (a pose's tip, so it can be reached, above the table, the arm not touching
itself). The observation is what the bus reports and what the host knows: joint positions
and speeds, the target, the tip's offset from it (forward kinematics of the measured
positions, `envs.kinematics`), and the previous command. The reward pays closeness and
charges the command's change per tick, so the motion stays smooth on real servos.
Success: the tip within `TIP_TOL` of the target for every tick of the final `HOLD_S`
seconds, no joint past its range, no self-collision.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import mujoco
import numpy as np

from envs.kinematics import ChainKinematics
from envs.robots.so101.layout import JOINT_RANGE, JOINTS
from envs.spec import Objective, RobotSpec, TaskInputs

ARM = JOINTS[:5]
"""The joints that place the tip (the gripper's jaw does not move it)."""
TIP_TOL = 0.02
"""Success: the tip within this distance (m) of the target ..."""
HOLD_S = 0.5
"""... for every control tick of the final HOLD_S seconds."""
RANGE_TOL = 0.01
"""Success: no joint reading more than this (rad) past its range."""
TABLE_CLEARANCE = 0.05
"""Targets and start poses keep the tip at least this high (m) above the table."""

_N = len(JOINTS)
_POS, _VEL = slice(0, _N), slice(_N, 2 * _N)
_LO = np.array([JOINT_RANGE[j][0] for j in JOINTS])
_HI = np.array([JOINT_RANGE[j][1] for j in JOINTS])
OBS_NAMES = (
    *(f"{j}_pos" for j in JOINTS),
    *(f"{j}_vel" for j in JOINTS),
    "target_x",
    "target_y",
    "target_z",
    "error_x",
    "error_y",
    "error_z",
    "bearing_cos",
    "bearing_sin",
    "target_radius",
    *(f"{j}_last" for j in JOINTS),
)


@lru_cache(maxsize=4)
def _model(xml_path: str) -> tuple[mujoco.MjModel, ChainKinematics, np.ndarray]:
    """The model, the tip's kinematics and the pan axis' (x, y) in the world."""
    model = mujoco.MjModel.from_xml_path(xml_path)
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    axis = data.xanchor[model.joint(JOINTS[0]).id, :2].copy()
    return model, ChainKinematics(model, "tip", ARM), axis


def target_bearing(spec: RobotSpec, sensors: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """(..., 3): cos and sin of the target's bearing about the pan axis as seen from the
    arm's present heading (0: straight ahead; +-pi: behind, where the pan cannot turn and
    the arm must lean back over its base), and the target's distance from the axis."""
    axis = _model(str(spec.xml_path))[2]
    dx, dy = goal[..., 0] - axis[0], goal[..., 1] - axis[1]
    rel = np.arctan2(dy, dx) + sensors[..., 0]  # the pan turns the arm about -z
    return np.stack([np.cos(rel), np.sin(rel), np.hypot(dx, dy)], axis=-1)


def tip_position(spec: RobotSpec, sensors: np.ndarray) -> np.ndarray:
    """Tip position (..., 3) from readings (..., n_sensors): the measured joint angles
    through the model's kinematics."""
    return _model(str(spec.xml_path))[1].position(sensors[..., : len(ARM)])


def self_collision(spec: RobotSpec, qpos: np.ndarray) -> np.ndarray:
    """(..., 6) joint angles -> (...,) bool: two of the arm's own links touch (contacts
    with the table are not counted). MuJoCo's collision detection, one pose at a time."""
    model = _model(str(spec.xml_path))[0]
    data = mujoco.MjData(model)
    flat = np.asarray(qpos, np.float64).reshape(-1, _N)
    hit = np.zeros(flat.shape[0], dtype=bool)
    body = model.geom_bodyid
    for i, q in enumerate(flat):
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        mujoco.mj_collision(model, data)
        c = data.contact[: data.ncon]
        hit[i] = bool(np.any((body[c.geom1] != 0) & (body[c.geom2] != 0)))
    return hit.reshape(np.shape(qpos)[:-1])


def reach_ahead(spec: RobotSpec, qpos: np.ndarray) -> np.ndarray:
    """(..., 6) joint angles -> (...,) how far (m) the tip lies ahead of the pan axis along
    the arm's own heading; negative: the arm leans back over its base."""
    axis = _model(str(spec.xml_path))[2]
    tip = tip_position(spec, qpos)
    heading = -qpos[..., 0]  # the pan turns the arm about -z
    return (tip[..., 0] - axis[0]) * np.cos(heading) + (tip[..., 1] - axis[1]) * np.sin(heading)


def _poses(
    spec: RobotSpec, rng: np.random.Generator, n: int, spread: float, ahead: float | None = None
) -> np.ndarray:
    """`n` collision-free poses, uniform in the middle `spread` of each joint's range, with
    the tip above the table and, given `ahead`, at least that far ahead of the pan axis
    (rejection sampling)."""
    mid, half = 0.5 * (_LO + _HI), 0.5 * (_HI - _LO) * spread
    out = np.zeros((0, _N))
    while len(out) < n:
        q = rng.uniform(mid - half, mid + half, size=(2 * n, _N))
        ok = tip_position(spec, q)[:, 2] > TABLE_CLEARANCE
        if ahead is not None:
            ok &= reach_ahead(spec, q) > ahead
        q = q[ok]
        q = q[~self_collision(spec, q)]
        out = np.concatenate([out, q])
    return out[:n]


@dataclass(frozen=True)
class Reach(Objective):
    """Bring the gripper tip to the episode's target and hold it there."""

    name: str = "reach"
    obs_names: tuple[str, ...] = OBS_NAMES
    episode_s: float = 4.0
    goal_names: tuple[str, ...] = ("target_x", "target_y", "target_z")
    start_spread: float = 0.6
    """Start poses: uniform in the middle 60 % of each joint's range, at rest."""
    target_spread: float = 0.8
    """Targets: the tip of a pose uniform in the middle 80 % of each joint's range ..."""
    target_ahead: float = 0.05
    """... whose tip lies at least this far (m) ahead of the pan axis along the arm's
    heading: the arm's front workspace. Behind it (the arm leaning back over its base,
    13-16 % of the poses) the pan cannot face the target and policies trained on both
    sides failed there (docs/so101.md)."""
    rate_cost: float = 0.05
    """Reward charge per unit of squared command change per tick, in units of the most a
    goal may move in one tick (`GOAL_RATE` / control_hz): the action's own scale."""

    def observe(self, spec: RobotSpec, sensors: np.ndarray, inputs: TaskInputs) -> np.ndarray:
        err = tip_position(spec, sensors) - inputs.goal
        last = spec.action_map.normalized(inputs.last_command)
        bearing = target_bearing(spec, sensors, inputs.goal)
        parts = (sensors[..., _POS], 0.1 * sensors[..., _VEL], inputs.goal, err, bearing, last)
        return np.concatenate(parts, axis=-1).astype(np.float32)

    def reward(
        self,
        spec: RobotSpec,
        sensors: np.ndarray,
        command: np.ndarray,
        action: np.ndarray,
        inputs: TaskInputs,
    ) -> np.ndarray:
        d = np.linalg.norm(tip_position(spec, sensors) - inputs.goal, axis=-1)
        close = 1.0 - np.tanh(d / 0.1) + 0.5 * (1.0 - np.tanh(d / TIP_TOL))
        step = (command - inputs.last_command) / spec.action_map.gain
        rate = self.rate_cost * np.sum(np.square(step), axis=-1)
        return close - rate - 10.0 * self.terminated(spec, sensors)

    def success(self, spec: RobotSpec, sensors: np.ndarray, goal: np.ndarray) -> np.ndarray:
        hold = max(1, int(round(HOLD_S * spec.control_hz)))
        d = np.linalg.norm(tip_position(spec, sensors[..., -hold:, :]) - goal[:, None], axis=-1)
        held = np.all(d < TIP_TOL, axis=-1)
        pos = sensors[..., _POS]
        in_range = np.all((pos >= _LO - RANGE_TOL) & (pos <= _HI + RANGE_TOL), axis=(-2, -1))
        long_enough = sensors.shape[-2] >= spec.episode_steps
        ok = held & in_range & long_enough
        for i in np.flatnonzero(ok):  # only episodes that would pass pay for the check
            ok[i] = not self_collision(spec, pos[i]).any()
        return ok

    def initial_state(
        self, spec: RobotSpec, model: mujoco.MjModel, rng: np.random.Generator, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        return _poses(spec, rng, n, self.start_spread), np.zeros((n, model.nv))

    def sample_goal(
        self, spec: RobotSpec, model: mujoco.MjModel, rng: np.random.Generator, n: int
    ) -> np.ndarray:
        return tip_position(spec, _poses(spec, rng, n, self.target_spread, self.target_ahead))


TASKS = (Reach(),)
DEFAULT_TASK = "reach"
