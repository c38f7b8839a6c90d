"""The schema of `python -m export.onnx` (configs/export.yaml): registered as
`export_schema` by export.onnx.
"""

from __future__ import annotations

from dataclasses import dataclass


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
