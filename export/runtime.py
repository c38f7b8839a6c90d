"""The deployed policy: an ONNX file run by onnxruntime, checked against a robot spec.

`OnnxPolicy.act(obs)` runs one observation with preallocated, bound input and output
buffers (onnxruntime I/O binding), so a control tick allocates nothing here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

META_FORMAT = "1"


class PolicyError(ValueError):
    """An ONNX file that cannot be loaded as a ppo-robot policy."""


class PolicyMismatch(PolicyError):
    """A policy made for another robot, sensor layout or control rate."""


@dataclass(frozen=True)
class PolicyInfo:
    robot: str
    spec_version: int
    layout_hash: str
    control_hz: float
    obs_names: list[str]
    action_names: list[str]
    n_sensors: int
    layout: dict[str, Any]
    meta: dict[str, str]
    task: str | None = None
    """The robot task it was trained for (`robot.task`; None in files from before tasks)."""

    @property
    def obs_dim(self) -> int:
        return len(self.obs_names)

    @property
    def act_dim(self) -> int:
        return len(self.action_names)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_metadata(meta: dict[str, str], where: str) -> PolicyInfo:
    if meta.get("ppo_robot.format") != META_FORMAT:
        raise PolicyError(f"{where}: not a ppo-robot policy (no ppo_robot.format metadata)")
    try:
        layout = json.loads(meta["robot.layout"])
        return PolicyInfo(
            robot=meta["robot.name"],
            spec_version=int(meta["robot.spec_version"]),
            layout_hash=meta["robot.layout_hash"],
            control_hz=float(meta["control_hz"]),
            obs_names=json.loads(meta["obs.names"]),
            action_names=json.loads(meta["action.names"]),
            n_sensors=len(layout["sensors"]),
            layout=layout,
            meta=dict(meta),
            task=meta.get("robot.task"),
        )
    except (KeyError, ValueError) as e:
        raise PolicyError(f"{where}: incomplete ppo-robot metadata ({e})") from None


class OnnxPolicy:
    """Load, validate and run an exported policy."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise PolicyError(f"policy file not found: {self.path}")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(self.path), so, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise PolicyError(
                f"policy {self.path} is not a loadable ONNX file ({first[:160]})"
            ) from None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.info = parse_metadata(meta, str(self.path))
        self.sha256 = file_sha256(self.path)
        inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        if [i.name for i in inputs] != ["obs"] or [o.name for o in outputs] != ["action"]:
            raise PolicyError(f"{self.path}: expected one input 'obs' and one output 'action'")
        self._in = np.zeros((1, self.info.obs_dim), dtype=np.float32)
        self._out = np.zeros((1, self.info.act_dim), dtype=np.float32)
        self._binding = self.session.io_binding()
        self._binding.bind_ortvalue_input("obs", ort.OrtValue.ortvalue_from_numpy(self._in))
        self._binding.bind_ortvalue_output("action", ort.OrtValue.ortvalue_from_numpy(self._out))
        self.act(np.zeros(self.info.obs_dim, dtype=np.float32))  # warm-up

    def check(self, spec) -> None:
        """Refuse a policy made for another robot, layout or rate (before anything moves)."""
        i = self.info
        if i.robot != spec.name:
            raise PolicyMismatch(
                f"policy {self.path.name} is for robot '{i.robot}', not '{spec.name}'"
            )
        if i.n_sensors != spec.n_sensors:
            raise PolicyMismatch(
                f"policy {self.path.name} expects {i.n_sensors} sensors, robot '{spec.name}' has {spec.n_sensors}"
            )
        if i.act_dim != spec.n_actuators:
            raise PolicyMismatch(
                f"policy {self.path.name} drives {i.act_dim} actuators, robot '{spec.name}' has {spec.n_actuators}"
            )
        if i.task is not None and spec.task is not None and i.task != spec.task_name:
            raise PolicyMismatch(
                f"policy {self.path.name} is for task '{i.task}' of robot '{spec.name}', "
                f"not '{spec.task_name}'"
            )
        if abs(i.control_hz - spec.control_hz) > 1e-9:
            raise PolicyMismatch(
                f"policy {self.path.name} was trained at {i.control_hz:g} Hz, deploy rate is {spec.control_hz:g} Hz"
            )
        if i.layout_hash != spec.layout_hash():
            raise PolicyMismatch(
                f"policy {self.path.name} has robot layout {i.layout_hash}, spec '{spec.name}' v{spec.version} "
                f"has {spec.layout_hash()} (sensor/actuator layout or limits changed)"
            )

    def act(self, obs: np.ndarray) -> np.ndarray:
        """One observation -> one command (a view into a reused buffer; copy to keep it)."""
        np.copyto(self._in[0], obs, casting="same_kind")
        self.session.run_with_iobinding(self._binding)
        return self._out[0]

    def act_batch(self, obs: np.ndarray) -> np.ndarray:
        """(B, obs_dim) -> (B, act_dim), for replay's policy re-check."""
        return self.session.run(["action"], {"obs": np.asarray(obs, dtype=np.float32)})[0]
