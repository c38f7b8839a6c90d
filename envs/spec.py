"""The robot spec: the one definition of a robot that every stage reads.

A `RobotSpec` owns the MJCF model, the sensor layout the controller reports, the action
mapping, limits and control rate, plus one task (an `Objective`: observation function,
episode length, reward, termination, success test, initial state). The training env, the
ONNX metadata, the bridge, the simulated controller and replay all read it; nothing about
a robot is written twice. A `RobotEntry` is what the registry (`envs.robots`) holds: the
layout, every task of the robot, the default one, the robot's folder.

Functions on the spec are vectorized numpy over a leading batch axis, so the same code runs
for 256 simulated envs and for the single observation the bridge builds each tick.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import mujoco
import numpy as np

from envs.action_map import ActionMap, build_action_map
from envs.layout_types import SAFE_MODES, Actuator, Sensor, SpecError, _layout_entry
from envs.objective import Objective, TaskInputs

__all__ = [
    "SAFE_MODES",
    "Actuator",
    "Objective",
    "RobotEntry",
    "RobotSpec",
    "Sensor",
    "SpecError",
    "TaskInputs",
]


@dataclass(frozen=True)
class RobotSpec:
    """A robot: model, sensor and actuator layout, action mapping, and one task.

    The layout and the linear action mapping are data; the task (observation, reward,
    termination, success, initial state) is the `Objective` in `task`, which the task
    methods here delegate to.
    """

    name: str
    """Robot name; the controller's INFO must report the same."""
    version: int
    """Spec version; bump when the observation or action layout changes."""
    xml: str
    """MJCF file, absolute or relative to `folder` (the robot's folder)."""
    sensors: tuple[Sensor, ...]
    actuators: tuple[Actuator, ...]
    control_hz: float = 100.0
    """Policy rate (COMMAND rate on the wire)."""
    task: Objective | None = None
    """The task this spec trains and runs (the robot's default unless asked otherwise)."""
    default_task: str = ""
    """Name of the robot's default task: only another task enters `layout()` and its hash."""
    folder: str = ""
    """The robot's folder (envs/robots/<name>/): MJCF, README.md, robot.yaml."""

    # ---------------------------------------------------------------- layout

    @property
    def xml_path(self) -> Path:
        p = Path(self.xml)
        return p if p.is_absolute() else Path(self.folder) / p

    @property
    def objective(self) -> Objective:
        if self.task is None:
            raise SpecError(f"robot '{self.name}' has no task")
        return self.task

    @property
    def task_name(self) -> str:
        return self.objective.name

    @property
    def episode_s(self) -> float:
        """Episode length in seconds (the task's)."""
        return self.objective.episode_s

    @property
    def obs_names(self) -> tuple[str, ...]:
        """Names of the observation entries, in order (the task's)."""
        return tuple(self.objective.obs_names)

    @property
    def n_sensors(self) -> int:
        return len(self.sensors)

    @property
    def n_actuators(self) -> int:
        return len(self.actuators)

    @property
    def obs_dim(self) -> int:
        return len(self.obs_names)

    @property
    def act_dim(self) -> int:
        return len(self.actuators)

    @property
    def episode_steps(self) -> int:
        return int(round(self.episode_s * self.control_hz))

    @property
    def command_low(self) -> np.ndarray:
        return np.array([a.low for a in self.actuators], dtype=np.float64)

    @property
    def command_high(self) -> np.ndarray:
        return np.array([a.high for a in self.actuators], dtype=np.float64)

    @cached_property
    def action_map(self) -> ActionMap:
        """The action mapping (`envs.action_map`): absolute or incremental per actuator."""
        return build_action_map(self)

    @property
    def action_offset(self) -> np.ndarray:
        """Command at action 0 of an absolute map; the observation's normalizing centre."""
        return self.action_map.offset

    @property
    def action_scale(self) -> np.ndarray:
        """Command change per unit of action of an absolute map; the normalizing span."""
        return self.action_map.scale

    @property
    def safe_command(self) -> np.ndarray:
        return np.array([a.safe for a in self.actuators], dtype=np.float64)

    @property
    def resolution(self) -> np.ndarray:
        return np.array([s.resolution for s in self.sensors], dtype=np.float64)

    @property
    def sensor_low(self) -> np.ndarray:
        """Lower edge of each sensor's safe envelope, in layout order."""
        return np.array([s.low for s in self.sensors], dtype=np.float64)

    @property
    def sensor_high(self) -> np.ndarray:
        """Upper edge of each sensor's safe envelope, in layout order."""
        return np.array([s.high for s in self.sensors], dtype=np.float64)

    def out_of_envelope(self, sensors: np.ndarray) -> np.ndarray:
        """(..., n_sensors) readings -> (...,) bool: some reading is outside its sensor's
        [low, high] or not finite. The one envelope that training terminates on, the host
        loop faults on and the controllers raise LIMIT on."""
        inside = (sensors >= self.sensor_low) & (sensors <= self.sensor_high)
        return ~np.all(inside, axis=-1)

    def action_to_command(
        self, action: np.ndarray, last_command: np.ndarray | None = None
    ) -> np.ndarray:
        """Policy output (mean action, nominally in [-1, 1]) -> command in physical units;
        an incremental map (`envs.action_map`) moves from `last_command`.

        The same map and clip is frozen into the exported ONNX graph (`export.onnx`), so
        the host never re-implements it.
        """
        return self.action_map.to_command(action, last_command)

    def command_for(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        """The command the exported graph gives for observations and actions (an
        incremental map reads the last command from the observation)."""
        return self.action_map.command_for(obs, action)

    # ---------------------------------------------------------------- model

    def load_model(self, xml_path: str | Path | None = None) -> mujoco.MjModel:
        """Compile the MJCF (or an alternate one) and check it matches this spec."""
        path = Path(xml_path) if xml_path is not None else self.xml_path
        if not path.is_file():
            raise SpecError(f"MJCF file not found: {path}")
        try:
            model = mujoco.MjModel.from_xml_path(str(path))
        except Exception as e:  # mujoco raises ValueError with a multi-line message
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise SpecError(f"MJCF {path} does not compile: {first}") from None
        self.check_model(model, str(path))
        return model

    def check_model(self, model: mujoco.MjModel, where: str = "model") -> None:
        """The model carries every declared sensor and actuator, with the spec's gains."""
        from envs.model_check import check_model

        check_model(model, self, where)

    def sensor_index(self, model: mujoco.MjModel) -> np.ndarray:
        """Indices into `sensordata` of the spec's sensors, in layout order (a vector
        sensor's entry: its address plus the component)."""
        idx = []
        for s in self.sensors:
            sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, s.mujoco_name)
            idx.append(model.sensor_adr[sid] + (s.component or 0))
        return np.array(idx, dtype=np.int64)

    def actuator_index(self, model: mujoco.MjModel) -> np.ndarray:
        """Indices into `ctrl` of the spec's actuators, in layout order."""
        return np.array(
            [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, a.name) for a in self.actuators]
        )

    def read_sensors(
        self,
        sensordata: np.ndarray,
        index: np.ndarray,
        resolution: np.ndarray | None = None,
        noise: np.ndarray | None = None,
        bias: np.ndarray | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """MuJoCo sensordata (N, nsensordata) -> controller readings (N, n_sensors).

        Adds bias and noise, then quantizes to the sensor resolution (an encoder reports
        counts, so quantization is last). Used by the env and by sim_robot alike.
        """
        x = np.take(sensordata, index, axis=-1, out=out)
        if bias is not None:
            x += bias
        if noise is not None:
            x += noise
        res = self.resolution if resolution is None else resolution
        if np.any(res > 0):
            q = np.where(res > 0, res, 1.0)
            x[...] = np.where(res > 0, np.round(x / q) * q, x)
        return x

    # ---------------------------------------------------------------- task

    @property
    def goal_names(self) -> tuple[str, ...]:
        return tuple(self.objective.goal_names)

    @property
    def goal_dim(self) -> int:
        return len(self.goal_names)

    def inputs(
        self, n: int, goal: np.ndarray | None = None, last_command: np.ndarray | None = None
    ) -> TaskInputs:
        """Task inputs for `n` envs; a task with a goal must be given one, the last command
        defaults to the command at action 0. Views of the arrays given, not copies: the
        deploy loop builds them once and refreshes the last command in place."""
        if goal is None:
            if self.goal_dim:
                raise SpecError(f"task '{self.task_name}' of '{self.name}' needs a goal")
            goal = np.zeros((n, 0))
        if last_command is None:
            last_command = np.broadcast_to(self.action_offset, (n, self.n_actuators))
        goal = np.broadcast_to(np.asarray(goal, np.float64), (n, self.goal_dim))
        return TaskInputs(goal, np.broadcast_to(last_command, (n, self.n_actuators)))

    def observe(
        self,
        sensors: np.ndarray,
        goal: np.ndarray | None = None,
        last_command: np.ndarray | None = None,
        inputs: TaskInputs | None = None,
    ) -> np.ndarray:
        """Controller readings (N, n_sensors) -> policy observation (N, obs_dim), float32;
        `inputs` (from `inputs()`, kept by a per-tick caller) in place of goal, last command."""
        inputs = inputs if inputs is not None else self.inputs(len(sensors), goal, last_command)
        return self.objective.observe(self, sensors, inputs)

    def reward(
        self,
        sensors: np.ndarray,
        command: np.ndarray,
        action: np.ndarray,
        goal: np.ndarray | None = None,
        last_command: np.ndarray | None = None,
    ) -> np.ndarray:
        """Per-step reward (N,) from true sensor values, the command, the raw action, the
        goal and the previous command."""
        inputs = self.inputs(len(sensors), goal, last_command)
        return self.objective.reward(self, sensors, command, action, inputs)

    def terminated(self, sensors: np.ndarray) -> np.ndarray:
        """(N,) bool: the episode ends without bootstrap (by default: out of envelope)."""
        return self.objective.terminated(self, sensors)

    def success(self, sensors: np.ndarray, goal: np.ndarray | None = None) -> np.ndarray:
        """Success of whole episodes from their sensor traces (N, T, n_sensors) and goals
        (N, goal_dim) -> (N,)."""
        return self.objective.success(self, sensors, self.inputs(len(sensors), goal).goal)

    def sample_goal(self, model: mujoco.MjModel, rng: np.random.Generator, n: int) -> np.ndarray:
        """(n, goal_dim) goals for new episodes (the task's)."""
        return self.objective.sample_goal(self, model, rng, n)

    def initial_state(
        self, model: mujoco.MjModel, rng: np.random.Generator, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(qpos (n, nq), qvel (n, nv)) to start episodes from."""
        return self.objective.initial_state(self, model, rng, n)

    # ---------------------------------------------------------------- metadata

    def layout(self) -> dict:
        """Everything another stage must agree on, as plain JSON-able data."""
        out = {
            "name": self.name,
            "version": self.version,
            "control_hz": self.control_hz,
            "sensors": [_layout_entry(s) for s in self.sensors],
            "actuators": [_layout_entry(a) for a in self.actuators],
            "obs_names": list(self.obs_names),
        }
        if self.goal_names:  # absent for a task without a goal: older hashes unchanged
            out["goal_names"] = list(self.goal_names)
        if self.task is not None and self.task.name != self.default_task:
            out["task"] = self.task.name  # the default task's hash predates tasks: unchanged
        return out

    def layout_hash(self) -> str:
        """The one hash of a robot layout: of this spec's `layout()`."""
        return RobotSpec.hash_layout(self.layout())

    @staticmethod
    def hash_layout(layout: dict) -> str:
        """The layout hash of a `layout()` dict kept elsewhere (a checkpoint, a log)."""
        blob = json.dumps(layout, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def with_rate(self, control_hz: float) -> RobotSpec:
        """The same robot at another control rate."""
        from dataclasses import replace

        return replace(self, control_hz=float(control_hz))

    # ---------------------------------------------------------------- safe state

    def __post_init__(self) -> None:
        names = [s.name for s in self.sensors]
        for a in self.actuators:
            if a.position_sensor is not None and a.position_sensor not in names:
                raise SpecError(
                    f"robot '{self.name}': actuator '{a.name}' position_sensor "
                    f"'{a.position_sensor}' is not in the sensor layout {names}"
                )

    def position_sensor_index(self) -> np.ndarray:
        """Per actuator, the layout index of its `position_sensor`, -1 where none."""
        names = [s.name for s in self.sensors]
        return np.array(
            [names.index(a.position_sensor) if a.position_sensor else -1 for a in self.actuators],
            dtype=np.int64,
        )

    def safe_command_for(self, sensors: np.ndarray) -> np.ndarray:
        """The safe command given the latest readings (n_sensors,): 'value' -> `safe`,
        'hold' -> the position sensor's reading clipped to the command limits, 'off' -> NaN
        (torque off: the controller's own state, never sent on the wire). A 'hold' whose
        reading is not finite falls back to `safe`."""
        cmd = self.safe_command
        for i, (a, j) in enumerate(zip(self.actuators, self.position_sensor_index(), strict=True)):
            if a.safe_mode == "hold" and math.isfinite(float(sensors[j])):
                cmd[i] = min(max(float(sensors[j]), a.low), a.high)
            elif a.safe_mode == "off":
                cmd[i] = np.nan
        return cmd

    def soft_start_origin(self, sensors: np.ndarray) -> np.ndarray:
        """Where the soft-start ramp starts, for readings (..., n_sensors): a position
        actuator with a position sensor at its measured position (clipped to the limits),
        every other at `safe`. Also where training holds the actuators at an episode's start."""
        sensors = np.asarray(sensors, np.float64)
        cmd = np.broadcast_to(self.safe_command, (*sensors.shape[:-1], self.n_actuators)).copy()
        j = self.position_sensor_index()
        pos = np.array([a.kind == "position" for a in self.actuators]) & (j >= 0)
        if pos.any():
            measured = sensors[..., j[pos]]
            cmd[..., pos] = np.clip(measured, self.command_low[pos], self.command_high[pos])
        return cmd

    # ---------------------------------------------------------------- state

    def state_from_sensors(
        self, model: mujoco.MjModel, sensors: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Readings (n_sensors,) -> (qpos (nq,), qvel (nv,)) to start a simulation from
        (replay, identification). Default: the joints the layout measures
        (`envs.state_map`), the rest at qpos0 / rest; a robot may override it."""
        from envs.state_map import state_from_sensors

        return state_from_sensors(self, model, sensors)


@dataclass(frozen=True)
class RobotEntry:
    """A registered robot: its layout (a `RobotSpec` without task), its tasks, its folder."""

    layout: RobotSpec
    tasks: tuple[Objective, ...]
    default_task: str
    folder: Path

    @property
    def name(self) -> str:
        return self.layout.name

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    def spec(self, control_hz: float | None = None, task: str | None = None) -> RobotSpec:
        """The robot with one of its tasks (default: `default_task`), at a control rate."""
        from dataclasses import replace

        name = task or self.default_task
        by_name = {t.name: t for t in self.tasks}
        if name not in by_name:
            raise SpecError(f"robot '{self.name}' has no task '{name}' (known: {sorted(by_name)})")
        spec = replace(
            self.layout, task=by_name[name], default_task=self.default_task, folder=str(self.folder)
        )
        return spec.with_rate(control_hz) if control_hz else spec


def wrap_angle(x: np.ndarray) -> np.ndarray:
    """Wrap to [-pi, pi)."""
    return (x + np.pi) % (2 * np.pi) - np.pi
