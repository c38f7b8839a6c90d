"""Single-observation policy latency: onnxruntime (our runtime policy) vs the torch actor.

For the default robot's policy (64x64) and a 256x256 MLP: median and p99 of `act` over
10,000 calls each, and the torch actor called per observation in the same process.
Ends with one JSON line.

    python benchmarks/export_latency.py [--calls 10000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._util import machine, quick_policy  # noqa: E402
from export.runtime import OnnxPolicy  # noqa: E402
from ppo_robot.checkpoint import build_actor, load_checkpoint  # noqa: E402


def time_calls(fn, obs: np.ndarray, calls: int) -> np.ndarray:
    for o in obs[:200]:
        fn(o)
    out = np.empty(calls)
    clock = time.perf_counter_ns
    for i in range(calls):
        o = obs[i % len(obs)]
        t = clock()
        fn(o)
        out[i] = clock() - t
    return out / 1e3


def measure(onnx_path: Path, calls: int) -> dict:
    pol = OnnxPolicy(onnx_path)
    ck = load_checkpoint(Path(onnx_path).parent / "run/checkpoints/best.pt")
    actor = build_actor(ck)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(1000, pol.info.obs_dim)).astype(np.float32)
    ort_us = time_calls(pol.act, obs, calls)

    @torch.no_grad()
    def torch_act(o):
        return actor(torch.from_numpy(o)[None]).numpy()

    torch_us = time_calls(torch_act, obs, calls)
    return {
        "ort_median_us": round(float(np.median(ort_us)), 2),
        "ort_p99_us": round(float(np.percentile(ort_us, 99)), 2),
        "torch_median_us": round(float(np.median(torch_us)), 2),
        "torch_p99_us": round(float(np.percentile(torch_us, 99)), 2),
        "speedup_vs_torch": round(float(np.median(torch_us) / np.median(ort_us)), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=10_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        small = quick_policy(Path(d) / "default")
        big = quick_policy(Path(d) / "mlp256", "ppo.hidden=[256,256]")
        big32 = quick_policy(
            Path(d) / "mlp256_f32", "ppo.hidden=[256,256]", export_args=("precision=float32",)
        )
        result = {
            "calls": args.calls,
            "default_policy": measure(small, args.calls),
            "mlp_256x256": measure(big, args.calls),
            "mlp_256x256_float32": measure(big32, args.calls),
            "machine": machine(),
            "date": time.strftime("%Y-%m-%d"),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
