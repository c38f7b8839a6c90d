"""What the batched engine needs from a task: observation, reward, termination, resets.

Two kinds of task run on the engine: a robot (a `RobotSpec`, observing through its sensor
layout) and Gymnasium's MuJoCo tasks (observing qpos/qvel, `envs/gym_tasks.py`). All
methods work on whole batches: arrays with a leading env axis.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import mujoco
import numpy as np

from envs.spec import RobotSpec


@dataclass
class StepView:
    """Arrays of the batch after a control step (views into the engine's buffers)."""

    qpos: np.ndarray
    """(N, nq) after the step."""
    qvel: np.ndarray
    """(N, nv) after the step."""
    qpos_prev: np.ndarray
    """(N, nq) before the step."""
    sensordata: np.ndarray
    """(N, nsensordata) true MuJoCo sensor values (from the last physics step)."""
    sensors: np.ndarray | None
    """(N, n_sensors) what the controller would report (noise, bias, quantization), robots only."""
    action: np.ndarray
    """(N, act_dim) the policy action, clipped to the action space."""
    ctrl: np.ndarray
    """(N, nu) the control written to MuJoCo (before latency and noise)."""
    goal: np.ndarray | None = None
    """(N, goal_dim) each env's episode goal (robots with a goal-directed task)."""
    last_ctrl: np.ndarray | None = None
    """(N, nu) the previous command: for `reward`, the one before this step's `ctrl`; for
    `observe`, `ctrl` itself (the command the actuators were last given, as the deploy loop
    observes it). At an episode's start: where the actuators are held."""
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    """The task's `data_fields`, (N, ...) each, as MjData holds them after the last physics
    step (like sensordata: computed at the start of that step, or at the last RK4 stage)."""


class Task(ABC):
    """A task the batched engine steps."""

    name: str
    max_episode_steps: int
    obs_dim: int
    act_dim: int
    action_low: np.ndarray
    action_high: np.ndarray
    sensor_names: tuple[str, ...] = ()
    has_success: bool = False
    data_fields: tuple[str, ...] = ()
    """MjData fields (float arrays, e.g. 'site_xpos') the task reads from `StepView.fields`."""
    goal_dim: int = 0
    """Size of each episode's goal (`sample_goal`), 0 for none."""

    @abstractmethod
    def load_model(self) -> mujoco.MjModel: ...

    @abstractmethod
    def n_substeps(self, model: mujoco.MjModel) -> int:
        """Physics steps per control step."""

    def bind(self, model: mujoco.MjModel) -> None:  # noqa: B027 - optional hook
        """Look names up once (indices into qpos, sensordata ...)."""

    @abstractmethod
    def initial_state(
        self, model: mujoco.MjModel, rng: np.random.Generator, n: int
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def sample_goal(self, model: mujoco.MjModel, rng: np.random.Generator, n: int) -> np.ndarray:
        """(n, goal_dim) goals for new episodes."""
        return np.zeros((n, self.goal_dim))

    def start_ctrl(self, sensors: np.ndarray | None, n: int) -> np.ndarray | None:
        """(n, nu) the control an episode starts held at, from its first readings; None:
        the safe control."""
        return None

    @abstractmethod
    def ctrl(self, action: np.ndarray, last_ctrl: np.ndarray) -> np.ndarray:
        """(N, act_dim) action and the previous step's (N, nu) control -> (N, nu) MuJoCo
        control (an incremental action map moves from the previous one)."""

    def sensors(
        self,
        sensordata: np.ndarray,
        noise: np.ndarray | None,
        bias: np.ndarray | None,
        resolution: np.ndarray | None,
    ) -> np.ndarray | None:
        """Controller readings from true sensordata; None where the task has no layout."""
        return None

    @abstractmethod
    def observe(self, v: StepView) -> np.ndarray: ...

    @abstractmethod
    def reward(self, v: StepView) -> np.ndarray: ...

    @abstractmethod
    def terminated(self, v: StepView) -> np.ndarray: ...

    def success(self, trace: np.ndarray, goal: np.ndarray | None = None) -> np.ndarray:
        """(N, T, n_sensors) sensor traces of finished episodes (and their goals) -> (N,) bool."""
        raise NotImplementedError


class RobotTask(Task):
    """A robot spec as an engine task: observes through its sensors, acts in [-1, 1]."""

    has_success = True

    def __init__(self, spec: RobotSpec, xml_path: str | None = None) -> None:
        self.spec = spec
        self.xml_path = xml_path
        self.name = spec.name
        self.max_episode_steps = spec.episode_steps
        self.obs_dim = spec.obs_dim
        self.act_dim = spec.act_dim
        self.action_low = -np.ones(spec.act_dim)
        self.action_high = np.ones(spec.act_dim)
        self.sensor_names = tuple(s.name for s in spec.sensors)
        self.goal_dim = spec.goal_dim
        self._sensor_idx: np.ndarray | None = None

    def load_model(self) -> mujoco.MjModel:
        return self.spec.load_model(self.xml_path)

    def n_substeps(self, model: mujoco.MjModel) -> int:
        return physics_substeps(model, self.spec.control_hz)

    def bind(self, model: mujoco.MjModel) -> None:
        self._sensor_idx = self.spec.sensor_index(model)
        act = self.spec.actuator_index(model)
        if not np.array_equal(act, np.arange(model.nu)):
            raise ValueError("actuators must be declared in the MJCF in the spec's order")

    def initial_state(self, model, rng, n):
        return self.spec.initial_state(model, rng, n)

    def sample_goal(self, model, rng, n):
        return self.spec.sample_goal(model, rng, n)

    def start_ctrl(self, sensors, n):
        """Position actuators start held at the measured pose (as the deploy's soft start
        begins from it); effort actuators at their safe value."""
        return None if sensors is None else self.spec.soft_start_origin(sensors)

    def ctrl(self, action: np.ndarray, last_ctrl: np.ndarray) -> np.ndarray:
        return self.spec.action_to_command(action, last_ctrl)

    def sensors(self, sensordata, noise, bias, resolution):
        assert self._sensor_idx is not None, "bind() first"
        return self.spec.read_sensors(sensordata, self._sensor_idx, resolution, noise, bias)

    def observe(self, v: StepView) -> np.ndarray:
        return self.spec.observe(v.sensors, v.goal, v.last_ctrl)

    def reward(self, v: StepView) -> np.ndarray:
        true = v.sensordata[:, self._sensor_idx]
        return self.spec.reward(true, v.ctrl, v.action, v.goal, v.last_ctrl)

    def terminated(self, v: StepView) -> np.ndarray:
        return self.spec.terminated(v.sensordata[:, self._sensor_idx])

    def success(self, trace: np.ndarray, goal: np.ndarray | None = None) -> np.ndarray:
        return self.spec.success(trace, goal)


def physics_substeps(model: mujoco.MjModel, control_hz: float) -> int:
    """Physics steps per control period; the period must be a whole number of steps."""
    n = 1.0 / (control_hz * model.opt.timestep)
    k = int(round(n))
    if k < 1 or abs(n - k) > 1e-6:
        raise ValueError(
            f"control_hz={control_hz} is not a whole number of physics steps "
            f"(timestep {model.opt.timestep} s)"
        )
    return k
