"""Control-loop timing: deploy against sim_robot on a pseudo-terminal, through the real CLIs.

Runs 60 s at 500 Hz and 10 s at 1 kHz (briefly trained real policies at those rates), and,
in this process, a plain `time.sleep(period)` loop doing the same per-tick work for
comparison (no absolute deadlines: it drifts), and the deploy loop's wait alone with no work
(`bare_wait_loop_500hz`: the machine's own late wake-ups, and the hypervisor's steal time over
it), and a loop that never sleeps (`bare_spin_loop_500hz`, normal priority: a SCHED_FIFO
thread that never sleeps is throttled by the kernel, 50 ms a second): a late tick there is
the CPU itself taken away, not a slow wake-up from idle. Each deploy's missed ticks are split
into late wake-ups and slow ticks from its log. Ends with one JSON line.

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
from benchmarks._util import ROOT, cli, machine, rate_policy  # noqa: E402


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
            *extra,
            timeout=seconds + 120,
        )
    finally:
        sim.terminate()
        sim.wait(timeout=10)


def missed_breakdown(log: str, period_us: float) -> dict:
    """Where the missed ticks of a deploy log lost their time: a late wake-up (the thread
    was not running at its deadline: the scheduler or the machine) or a slow tick (the
    tick's own work, per stage)."""
    from firmware_bridge.logs.rollout_log import read_log

    t = read_log(log).topic("/timing")
    late = [r for r in t if r["missed"]]
    woke_late = [r for r in late if r["period_error_us"] > period_us / 2]
    stages = ("obs_us", "policy_us", "safety_us", "send_us")
    return {
        "missed_ticks_logged": len(late),
        "woke_late": len(woke_late),
        "slow_tick": len(late) - len(woke_late),
        "wake_up_late_max_us": round(max((r["period_error_us"] for r in late), default=0.0), 1),
        "stage_max_us": {k: round(max(r[k] for r in t), 1) for k in stages},
    }


def _steal_ticks() -> int:
    """Time this VM's CPUs were runnable but not run by the hypervisor (/proc/stat, USER_HZ)."""
    with open("/proc/stat") as f:
        return int(f.readline().split()[8])


def bare_loop(rate: int, seconds: float, realtime: bool) -> dict:
    """The machine's own floor: the deploy loop's wait (absolute deadline, sleep, then a
    300 us spin) with no work, no I/O, no other process of ours, at the deploy's priority.
    A deadline missed here is a stall of the machine, not of the bridge."""
    if realtime:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50))
        except OSError:  # not granted: the deploy ran at normal priority too
            realtime = False
    try:
        return {**_bare_loop(rate, seconds), "sched_fifo": realtime}
    finally:
        if realtime:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def _bare_loop(rate: int, seconds: float, spin_ns: int = 300_000) -> dict:
    period = 1_000_000_000 // rate
    n = int(rate * seconds)
    late = np.empty(n)
    clock = time.perf_counter_ns
    steal0 = _steal_ticks()
    deadline = clock() + period
    for i in range(n):
        remaining = deadline - clock()
        if remaining > spin_ns:
            time.sleep((remaining - spin_ns) / 1e9)
        while clock() < deadline:
            pass
        late[i] = (clock() - deadline) / 1e3
        deadline += period
    over = late > period / 2e3
    return {
        "rate_hz": rate,
        "seconds": seconds,
        "late_p99_us": round(float(np.percentile(late, 99)), 1),
        "late_max_us": round(float(late.max()), 1),
        "ticks_late_over_half_period": int(over.sum()),
        "steal_s": (_steal_ticks() - steal0) / os.sysconf("SC_CLK_TCK"),
    }


def naive_loop(rate: int, seconds: float) -> dict:
    """The loop most hand-written deploy scripts use: work, then time.sleep(period)."""
    from envs.robots import get_robot
    from export.runtime import OnnxPolicy  # noqa: F401  (same imports as deploy)

    spec = get_robot("furuta")
    period = 1.0 / rate
    n = int(rate * seconds)
    t = np.empty(n)
    sensors = np.zeros((1, 4))
    inputs = spec.inputs(1, None, np.zeros((1, spec.n_actuators)))  # as the deploy loop: once
    start = time.perf_counter()
    for i in range(n):
        t[i] = time.perf_counter()
        spec.observe(sensors, inputs=inputs)
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
        "--no-realtime",
        dest="realtime",
        action="store_false",
        help="deploy with realtime_priority=0 (the default is SCHED_FIFO 50 where granted)",
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
        "missed_breakdown",
    )
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        p500 = rate_policy(d / "p500", 500)
        p1k = rate_policy(d / "p1k", 1000)
        extra = [] if args.realtime else ["realtime_priority=0"]
        r500 = deploy_run(p500, 500, args.seconds_500, d / "logs", extra)
        r1k = deploy_run(p1k, 1000, args.seconds_1k, d / "logs", extra)
        r500["missed_breakdown"] = missed_breakdown(r500["log"], 2000.0)
        r1k["missed_breakdown"] = missed_breakdown(r1k["log"], 1000.0)
        naive = naive_loop(500, min(args.seconds_500, 10.0))
        bare = bare_loop(500, args.seconds_500, args.realtime)
        spin = _bare_loop(500, args.seconds_500, spin_ns=10**12)
    print(
        json.dumps(
            {
                "deploy_500hz": {"seconds": args.seconds_500, **{k: r500[k] for k in keys}},
                "deploy_1khz": {"seconds": args.seconds_1k, **{k: r1k[k] for k in keys}},
                "plain_sleep_loop_500hz": naive,
                "bare_wait_loop_500hz": bare,
                "bare_spin_loop_500hz": spin,
                "realtime_priority": 50 if args.realtime else None,
                "machine": machine(),
                "date": time.strftime("%Y-%m-%d"),
            }
        )
    )


if __name__ == "__main__":
    main()
