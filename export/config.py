"""The schema of `python -m export.onnx` (configs/export.yaml): registered as
`export_schema` by export.onnx.
"""

from __future__ import annotations

from dataclasses import dataclass

from ppo_robot.errors import UserError

PRECISIONS = ("float64", "float32")
"""The arithmetic a graph can be built in."""


@dataclass
class ExportConfig:
    checkpoint: str = "???"
    """Checkpoint written by ppo_robot.train."""
    output: str = "???"
    """The .onnx file to write (a .json sidecar for humans is written beside it)."""
    parity_n: int = 10_000
    """Observations drawn from the normalizer statistics for the parity check (>= 10000)."""
    parity_tol: float = 1e-5
    """Largest allowed |onnxruntime - torch| over the parity observations."""
    seed: int = 0
    """Seed of the parity observations."""
    precision: str = "float64"
    """Arithmetic inside the graph: float64 (exact parity) or float32 (faster for big MLPs)."""

    def validate(self) -> None:
        """Range checks a type cannot express; raises UserError naming the key."""
        if self.parity_n < 10_000:
            raise UserError(f"parity_n must be >= 10000, got {self.parity_n}")
        if self.precision not in PRECISIONS:
            raise UserError(f"precision must be float64 or float32, got '{self.precision}'")
