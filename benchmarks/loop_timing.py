"""Control-loop timing: deploy against sim_robot on a pseudo-terminal, through the real CLIs.

Runs 60 s at 500 Hz and 10 s at 1 kHz (briefly trained real policies at those rates), and,
in this process, a plain `time.sleep(period)` loop doing the same per-tick work for
comparison (no absolute deadlines: it drifts). Ends with one JSON line.

    python benchmarks/loop_timing.py [--seconds-500 60] [--seconds-1k 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._util import ROOT, cli, machine, quick_policy  # noqa: E402


def deploy_run(policy: Path, rate: int, seconds: float, log_dir: Path, extra: list[str]) -> dict:
    sim = subprocess.Popen(
        [sys.executable, "-m", "firmware_bridge.sim_robot", "robot=furuta"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    port = sim.stdout.readline().split()[1]
    try:
        return cli(
            "firmware_bridge.deploy",
            f"policy={policy}",
            f"port={port}",
            f"rate_hz={rate}",
            f"duration_s={seconds}",
            f"log_dir={log_dir}",
            "status=false",
            timeout=seconds + 120,
        )
    finally:
        sim.terminate()
        sim.wait(timeout=10)


def naive_loop(rate: int, seconds: float) -> dict:
    """The loop most hand-written deploy scripts use: work, then time.sleep(period)."""
    from envs.robots import get_robot
    from export.runtime import OnnxPolicy  # noqa: F401  (same imports as deploy)

    spec = get_robot("furuta")
    period = 1.0 / rate
    n = int(rate * seconds)
    t = np.empty(n)
    sensors = np.zeros((1, 4))
    start = time.perf_counter()
    for i in range(n):
        t[i] = time.perf_counter()
        spec.observe(sensors)
        time.sleep(period)
    ideal = start + np.arange(n) * period
    err = (t - ideal) * 1e6
    intervals = np.diff(t) * 1e6
    return {
        "rate_hz": rate,
        "seconds": seconds,
        "interval_error_p99_us": round(
            float(np.percentile(np.abs(intervals - period * 1e6), 99)), 1
        ),
        "drift_at_end_ms": round(float(err[-1] / 1e3), 2),
        "achieved_rate_hz": round(float((n - 1) / (t[-1] - t[0])), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds-500", type=float, default=60.0)
    ap.add_argument("--seconds-1k", type=float, default=10.0)
    ap.add_argument(
        "--realtime", action="store_true", help="deploy with realtime_priority=50 (SCHED_FIFO)"
    )
    args = ap.parse_args()
    keys = (
        "ticks",
        "missed_deadlines",
        "period_error_p50_us",
        "period_error_p99_us",
        "period_error_max_us",
        "compute_p50_us",
        "compute_p99_us",
        "state_age_p50_ms",
        "state_age_p99_ms",
        "dropped_frames",
        "faults",
        "log_dropped",
    )
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        p500 = quick_policy(d / "p500", "env.control_hz=500", "ppo.n_steps=64", steps=4096)
        p1k = quick_policy(d / "p1k", "env.control_hz=1000", "ppo.n_steps=64", steps=4096)
        extra = ["realtime_priority=50"] if args.realtime else []
        r500 = deploy_run(p500, 500, args.seconds_500, d / "logs", extra)
        r1k = deploy_run(p1k, 1000, args.seconds_1k, d / "logs", extra)
        naive = naive_loop(500, min(args.seconds_500, 10.0))
    print(
        json.dumps(
            {
                "deploy_500hz": {"seconds": args.seconds_500, **{k: r500[k] for k in keys}},
                "deploy_1khz": {"seconds": args.seconds_1k, **{k: r1k[k] for k in keys}},
                "plain_sleep_loop_500hz": naive,
                "realtime_priority": 50 if args.realtime else None,
                "machine": machine(),
                "date": time.strftime("%Y-%m-%d"),
            }
        )
    )


if __name__ == "__main__":
    main()
