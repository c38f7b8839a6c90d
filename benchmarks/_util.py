"""Shared by the benchmarks: run the real CLIs, read their JSON lines, make small policies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cli(module: str, *args: str, timeout: float = 1800) -> dict:
    """Run `python -m module args`, raise on failure, return its closing JSON line."""
    p = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    if p.returncode != 0:
        raise RuntimeError(
            f"{module} {' '.join(args)} exited {p.returncode}: {p.stderr.strip()[-2000:]}"
        )
    return json.loads(p.stdout.strip().splitlines()[-1])


def quick_policy(
    out_dir: Path, *overrides: str, steps: int = 8192, export_args: tuple[str, ...] = ()
) -> Path:
    """A briefly trained (not good, but real) policy exported to ONNX, e.g. for timing."""
    out_dir.mkdir(parents=True, exist_ok=True)
    s = cli(
        "ppo_robot.train",
        f"run_dir={out_dir}/run",
        f"total_steps={steps}",
        "env.num_envs=64",
        "ppo.n_steps=16",
        "eval_episodes=4",
        "progress=false",
        "randomization=none",
        *overrides,
    )
    onnx_path = out_dir / "policy.onnx"
    cli("export.onnx", f"checkpoint={s['checkpoint']}", f"output={onnx_path}", *export_args)
    return onnx_path


def rate_policy(out_dir: Path, rate_hz: int) -> Path:
    """A real Furuta policy at rate_hz after one PPO update at a tiny learning rate, exported
    to ONNX: for loop timing and the bridge's tests. Its commands stay within millivolts,
    far below the arm's friction, so a run of any length keeps the arm inside its travel
    (the spec's envelope, where the controllers raise LIMIT)."""
    return quick_policy(
        out_dir,
        f"env.control_hz={rate_hz}",
        "ppo.n_steps=64",
        "eval_episodes=2",
        "ppo.lr=1e-6",
        "ppo.lr_schedule=constant",
        steps=4096,
    )


def machine() -> dict:
    import platform

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def plot_curves(
    lines: list[tuple[list[float], list[float], dict]],
    out: Path,
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    target: float,
    ylim: tuple[float, float] | None = None,
    size: tuple[float, float] = (7, 4),
) -> None:
    """Learning curves (x, y, matplotlib kwargs each) with the target as a dashed line,
    saved as a PNG at `out` (its folder made)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    for x, y, kw in lines:
        ax.plot(x, y, marker=".", **kw)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.axhline(target, color="gray", lw=0.8, ls="--")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.legend()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
