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
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path

import mujoco
import numpy as np


class SpecError(ValueError):
    """A robot spec, or an MJCF model, that does not fit together."""


@dataclass(frozen=True)
class Sensor:
    """One value in the controller's STATE message."""

    name: str
    """Name in the STATE layout; also the MuJoCo sensor that simulates it."""
    unit: str
    """Physical unit, e.g. 'rad', 'rad/s'."""
    low: float
    """Lowest value that is safe; outside [low, high] the robot is out of its envelope."""
    high: float
    """Highest value that is safe."""
    resolution: float = 0.0
    """Quantum of the reading (an encoder's 2*pi/counts), 0 for a continuous value."""
    source: str | None = None
    """MuJoCo sensor that simulates it; None = `name`."""
    component: int | None = None
    """Index into a vector sensor's values (a gyro's 0..2); None = a scalar sensor."""

    @property
    def mujoco_name(self) -> str:
        return self.source if self.source is not None else self.name


@dataclass(frozen=True)
class Actuator:
    """One value in the host's COMMAND message."""

    name: str
    """Name in the COMMAND layout; also the MuJoCo actuator that simulates it."""
    unit: str
    """Physical unit of the command, e.g. 'V' (motor voltage), 'rad' (servo target)."""
    low: float
    """Lowest command the controller accepts."""
    high: float
    """Highest command the controller accepts."""
    kind: str = "effort"
    """'effort' (voltage, current or torque) or 'position' (servo target with PD gains)."""
    safe: float = 0.0
    """Command of the safe state (zero voltage; for servos the hold pose, or torque-off)."""
    center: float | None = None
    """Command at policy action 0 (default pose for servos); None = middle of [low, high]."""
    half_range: float | None = None
    """Command change for policy action +-1; None = half of [low, high]."""
    kp: float = 0.0
    """Position gain the servo runs with (position actuators only)."""
    kd: float = 0.0
    """Damping gain the servo runs with (position actuators only)."""
    safe_mode: str = "value"
    """Safe state: 'value' = command `safe`; 'hold' = hold the measured position (reading
    of `position_sensor`); 'off' = torque off (NaN inside the controller, never on the wire)."""
    position_sensor: str | None = None
    """Layout sensor measuring the joint it drives; needed by 'hold' and by soft start of a
    position actuator (it ramps from the measured pose)."""

    def __post_init__(self) -> None:
        if self.safe_mode not in SAFE_MODES:
            raise SpecError(
                f"actuator '{self.name}': safe_mode '{self.safe_mode}' is not one of {SAFE_MODES}"
            )
        if self.safe_mode == "hold" and self.kind != "position":
            raise SpecError(f"actuator '{self.name}': safe_mode 'hold' needs kind='position'")
        if self.kind == "position" and not self.position_sensor:
            raise SpecError(
                f"actuator '{self.name}': a position actuator needs its position_sensor "
                "(safe_mode 'hold' and the soft start read it)"
            )


SAFE_MODES = ("value", "hold", "off")
_LAYOUT_DEFAULTS = {
    "source": None,
    "component": None,
    "safe_mode": "value",
    "position_sensor": None,
}
"""Fields left out of `layout()` at these values, so older layouts keep their hash."""


def _layout_entry(entry: Sensor | Actuator) -> dict:
    d = asdict(entry)
    return {k: v for k, v in d.items() if k not in _LAYOUT_DEFAULTS or v != _LAYOUT_DEFAULTS[k]}


class Objective(ABC):
    """A robot's task: what the policy observes, the reward, when an episode ends or
    succeeds, and where episodes start. The layout it works on (sensors, actuators, limits,
    rate) is the `RobotSpec` passed in; one robot may have several objectives.

    Not `envs.task.Task` (the engine's interface, which a `RobotSpec` is adapted to)."""

    name: str = ""
    """Task name (`get_robot(robot, task=name)`, the Gymnasium id's suffix)."""
    obs_names: tuple[str, ...] = ()
    """Names of the observation entries, in order."""
    episode_s: float = 5.0
    """Episode length in seconds."""

    @abstractmethod
    def observe(self, spec: RobotSpec, sensors: np.ndarray) -> np.ndarray:
        """Controller readings (N, n_sensors) -> policy observation (N, obs_dim), float32."""

    @abstractmethod
    def reward(
        self, spec: RobotSpec, sensors: np.ndarray, command: np.ndarray, action: np.ndarray
    ) -> np.ndarray:
        """Per-step reward (N,) from true sensor values, the command and the raw action."""

    def terminated(self, spec: RobotSpec, sensors: np.ndarray) -> np.ndarray:
        """(N,) bool: the robot left its safe envelope (episode ends, no bootstrap).

        By default the sensors' envelope (`out_of_envelope`); a task may end earlier."""
        return spec.out_of_envelope(sensors)

    @abstractmethod
    def success(self, spec: RobotSpec, sensors: np.ndarray) -> np.ndarray:
        """Success of whole episodes from their sensor traces (N, T, n_sensors) -> (N,)."""

    @abstractmethod
    def initial_state(
        self, spec: RobotSpec, model: mujoco.MjModel, rng: np.random.Generator, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(qpos (n, nq), qvel (n, nv)) to start episodes from."""


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

    @property
    def action_offset(self) -> np.ndarray:
        """Command at action 0."""
        return np.array(
            [a.center if a.center is not None else 0.5 * (a.low + a.high) for a in self.actuators]
        )

    @property
    def action_scale(self) -> np.ndarray:
        """Command change per unit of action."""
        return np.array(
            [
                a.half_range if a.half_range is not None else 0.5 * (a.high - a.low)
                for a in self.actuators
            ]
        )

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

    def action_to_command(self, action: np.ndarray) -> np.ndarray:
        """Policy output (mean action, nominally in [-1, 1]) -> command in physical units.

        The same affine map and clip is frozen into the exported ONNX graph
        (`export.onnx`), so the host never re-implements it.
        """
        cmd = self.action_offset + self.action_scale * np.clip(action, -1.0, 1.0)
        return np.clip(cmd, self.command_low, self.command_high)

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
        for s in self.sensors:
            _check_sensor(model, s, self.name, where)
        for a in self.actuators:
            aid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, a.name)
            if aid < 0:
                raise SpecError(f"{where}: robot '{self.name}' needs actuator '{a.name}', missing")
            if a.kind == "position":
                _check_gains(model, aid, a, where)
                _check_position_sensor(model, aid, a, self.sensors, where)
        if model.nu != self.n_actuators:
            raise SpecError(
                f"{where}: has {model.nu} actuators, robot '{self.name}' defines {self.n_actuators}"
            )

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

    def observe(self, sensors: np.ndarray) -> np.ndarray:
        """Controller readings (N, n_sensors) -> policy observation (N, obs_dim), float32."""
        return self.objective.observe(self, sensors)

    def reward(self, sensors: np.ndarray, command: np.ndarray, action: np.ndarray) -> np.ndarray:
        """Per-step reward (N,) from true sensor values, the command and the raw action."""
        return self.objective.reward(self, sensors, command, action)

    def terminated(self, sensors: np.ndarray) -> np.ndarray:
        """(N,) bool: the episode ends without bootstrap (by default: out of envelope)."""
        return self.objective.terminated(self, sensors)

    def success(self, sensors: np.ndarray) -> np.ndarray:
        """Success of whole episodes from their sensor traces (N, T, n_sensors) -> (N,)."""
        return self.objective.success(self, sensors)

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
        """Where the soft-start ramp starts: a position actuator with a position sensor at
        its measured position (clipped to the limits), every other at `safe`."""
        cmd = self.safe_command
        for i, (a, j) in enumerate(zip(self.actuators, self.position_sensor_index(), strict=True)):
            if a.kind == "position" and j >= 0:
                cmd[i] = min(max(float(sensors[j]), a.low), a.high)
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


def _check_sensor(model: mujoco.MjModel, s: Sensor, robot: str, where: str) -> None:
    """The MuJoCo sensor of a layout entry exists and the entry picks one value of it."""
    src = s.mujoco_name
    sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, src)
    if sid < 0:
        raise SpecError(f"{where}: robot '{robot}' needs sensor '{src}', missing")
    dim = int(model.sensor_dim[sid])
    if s.component is None and dim != 1:
        raise SpecError(
            f"{where}: sensor '{src}' has {dim} values: layout entry '{s.name}' must name a component"
        )
    if s.component is not None and not 0 <= s.component < dim:
        raise SpecError(
            f"{where}: sensor '{src}' has {dim} values: component {s.component} of '{s.name}' "
            "is out of range"
        )


def _check_gains(model: mujoco.MjModel, aid: int, a: Actuator, where: str) -> None:
    """A position actuator's kp/kd are the MJCF's (gain kp, bias -kp q - kd qdot)."""
    g, b = model.actuator_gainprm[aid], model.actuator_biasprm[aid]
    for what, want, got in (("kp", a.kp, g[0]), ("kp", a.kp, -b[1]), ("kd", a.kd, -b[2])):
        if not math.isclose(want, float(got), rel_tol=1e-9, abs_tol=0.0):
            raise SpecError(
                f"{where}: actuator '{a.name}' {what} = {want:g} in the spec, but the MJCF "
                f"gives {float(got):g}"
            )


def _check_position_sensor(
    model: mujoco.MjModel, aid: int, a: Actuator, sensors: tuple[Sensor, ...], where: str
) -> None:
    """A position actuator's `position_sensor`, where it is a joint sensor, measures the
    joint the actuator drives (else 'hold' would hold another joint's angle)."""
    s = next(x for x in sensors if x.name == a.position_sensor)
    sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, s.mujoco_name)
    joint = int(mujoco.mjtObj.mjOBJ_JOINT)
    if int(model.sensor_objtype[sid]) != joint or int(model.actuator_trntype[aid]) != int(
        mujoco.mjtTrn.mjTRN_JOINT
    ):
        return
    if int(model.sensor_type[sid]) != int(mujoco.mjtSensor.mjSENS_JOINTPOS):
        raise SpecError(
            f"{where}: actuator '{a.name}' position_sensor '{s.name}' is not a jointpos sensor"
        )
    if int(model.sensor_objid[sid]) != int(model.actuator_trnid[aid, 0]):
        sj = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, int(model.sensor_objid[sid]))
        aj = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, int(model.actuator_trnid[aid, 0]))
        raise SpecError(
            f"{where}: actuator '{a.name}' drives joint '{aj}' but its position_sensor "
            f"'{s.name}' measures joint '{sj}'"
        )


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
