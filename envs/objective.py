"""A robot's task (`Objective`) and what it reads besides the sensors (`TaskInputs`).

The layout a task works on is the `envs.spec.RobotSpec` passed to each method; the spec
re-exports both names, so a robot folder imports them from `envs.spec`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

import mujoco
import numpy as np

if TYPE_CHECKING:  # the spec imports this module; the names here are for annotations only
    from envs.spec import RobotSpec


@dataclass
class TaskInputs:
    """What a task's observation and reward read besides the sensors, per env: the
    episode's goal and the command the actuators were last given. Training keeps both per
    env (`envs.batched`); the deploy loop keeps the run's goal and the last command it sent."""

    goal: np.ndarray
    """(N, goal_dim) the episode's goal (`Objective.sample_goal`); (N, 0) for a task without."""
    last_command: np.ndarray
    """(N, n_actuators) the previous control step's command in physical units (at an
    episode's start: the soft-start origin, where the actuators are held)."""


class Objective(ABC):
    """A robot's task: what the policy observes, the reward, when an episode ends or
    succeeds, where episodes start and, for a goal-directed task, the goal each episode
    gets. The layout it works on (sensors, actuators, limits, rate) is the `RobotSpec`
    passed in; one robot may have several objectives.

    Not `envs.task.Task` (the engine's interface, which a `RobotSpec` is adapted to)."""

    name: str = ""
    """Task name (`get_robot(robot, task=name)`, the Gymnasium id's suffix)."""
    obs_names: tuple[str, ...] = ()
    """Names of the observation entries, in order."""
    episode_s: float = 5.0
    """Episode length in seconds."""
    goal_names: tuple[str, ...] = ()
    """Names of the goal's entries (a reach target's x, y, z); empty: no goal."""

    @abstractmethod
    def observe(self, spec: RobotSpec, sensors: np.ndarray, inputs: TaskInputs) -> np.ndarray:
        """Controller readings (N, n_sensors) and the task inputs -> policy observation
        (N, obs_dim), float32."""

    @abstractmethod
    def reward(
        self,
        spec: RobotSpec,
        sensors: np.ndarray,
        command: np.ndarray,
        action: np.ndarray,
        inputs: TaskInputs,
    ) -> np.ndarray:
        """Per-step reward (N,) from true sensor values, the command, the raw action and
        the task inputs (the goal, the previous command)."""

    def terminated(self, spec: RobotSpec, sensors: np.ndarray) -> np.ndarray:
        """(N,) bool: the robot left its safe envelope (episode ends, no bootstrap).

        By default the sensors' envelope (`out_of_envelope`); a task may end earlier."""
        return spec.out_of_envelope(sensors)

    @abstractmethod
    def success(self, spec: RobotSpec, sensors: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Success of whole episodes from their sensor traces (N, T, n_sensors) and goals
        (N, goal_dim) -> (N,)."""

    @abstractmethod
    def initial_state(
        self, spec: RobotSpec, model: mujoco.MjModel, rng: np.random.Generator, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(qpos (n, nq), qvel (n, nv)) to start episodes from."""

    def sample_goal(
        self, spec: RobotSpec, model: mujoco.MjModel, rng: np.random.Generator, n: int
    ) -> np.ndarray:
        """(n, goal_dim) goals for new episodes; a task without a goal: (n, 0)."""
        return np.zeros((n, len(self.goal_names)))
