"""The schema of `python -m firmware_bridge.replay` (configs/replay.yaml), registered as
`replay_schema` by firmware_bridge.analysis.replay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ppo_robot.errors import UserError

POSITIVE = (
    "rmse_horizon_s",
    "window_s",
    "divergence_frac",
    "fit_step",
    "fit_latency_step_s",
    "fit_robust_scale",
)
"""The keys that must be > 0 where set."""


@dataclass
class ReplayConfig:
    log: Any = "???"
    """Rollout log (MCAP) to replay; a list of logs (log=[A,B]) for fit=[...]."""
    out_dir: str | None = None
    """Report folder (default: beside the first log, named <log>-replay)."""
    policy: str | None = None
    """ONNX policy for the re-check (default: the path in the log; its sha256 must match)."""
    checkpoint: str | None = None
    """Checkpoint for the re-check of a simulated log (default: the one the log names)."""
    model_xml: str | None = None
    """MJCF to replay on (default: the robot spec's, or the one a simulated log names)."""
    reality: str | None = None
    """Reality perturbation YAML to replay on (e.g. a fitted_reality.yaml); not with fit."""
    latency_s: float | None = None
    """Controller command latency, s (null: the reality's, else the log's, else 0)."""
    rmse_horizon_s: float | None = None
    """RMSE and correlation are also given over the first this many seconds of the run
    (null: the robot's, from envs/robots/<robot>/robot.yaml)."""
    window_s: float | None = None
    """Multiple-shooting window: the window RMSE and the fit restart from the log this often
    (null: the robot's, from envs/robots/<robot>/robot.yaml)."""
    divergence_frac: float = 0.1
    """A sensor has diverged once |sim - logged| exceeds this fraction of its logged range."""
    fit: list[str] = field(default_factory=list)
    """Model parameters to fit (damping, coulomb, armature, motor_gain, pendulum_mass, latency ...)."""
    fit_bound: float = 5.0
    """Fitted multipliers stay within [1/fit_bound, fit_bound] of the nominal values."""
    fit_step: float | None = None
    """The fit's difference step of a multiplier's log (null: the robot's robot.yaml
    `fit_step`, else firmware_bridge.analysis.sysid.FIT_STEP)."""
    fit_latency_step_s: float | None = None
    """... and of the latency, s (null: the robot's `fit_latency_step_s`, else
    sysid.LATENCY_STEP_S)."""
    fit_robust_scale: float | None = None
    """A soft-L1 loss from this normalized error up (null: the robot's robot.yaml
    `fit_robust_scale`, else plain least squares)."""
    render: bool = False
    """Render the replay to MP4 (MuJoCo offscreen, headless EGL or OSMesa)."""
    render_fps: int = 30
    """Video frame rate."""
    render_width: int = 320
    """Width of each of the two views (logged, simulated), pixels."""
    render_height: int = 240
    """Video height, pixels."""
    plots: bool = True
    """Write the PNG figures and report.md (false: the JSON line only)."""
    nthread: int = 2
    """MuJoCo rollout threads."""

    def log_paths(self) -> list[Path]:
        """`log=PATH` or `log=[A,B]` as paths; absent or empty refused."""
        if self.log is None:
            raise UserError("log: give log=PATH (or log=[A,B] with fit=[...])")
        items = self.log if isinstance(self.log, list) else [self.log]
        if not items:
            raise UserError("log: the list of logs is empty")
        return [Path(str(p)) for p in items]

    def validate(self) -> None:
        """Checks a type cannot express; raises UserError naming the key. The robot's
        replay windows (filled in once the log is read) are checked again then."""
        if len(self.log_paths()) > 1 and not self.fit:
            raise UserError(
                "log: a list of logs is for fitting (fit=[...]); give one log to replay"
            )
        if self.fit and self.reality:
            raise UserError(
                "fit= fits multipliers of the nominal model; leave reality= out when fitting"
            )
        for k in POSITIVE:
            v = getattr(self, k)
            if v is not None and float(v) <= 0:
                raise UserError(f"{k} must be > 0, got {v}")
