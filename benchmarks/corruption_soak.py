"""Corruption soak: deploy at 500 Hz through the fault proxy with 1 % of the frames corrupted
in both directions, against sim_robot, through the real CLIs. Ends with one JSON line.

Checks, from what each side recorded on its own:
- every corrupt frame is counted: the host's dropped frames are at least the proxy's
  corruptions controller -> host up to the newest STATE the host logged (a later one may be
  in flight when the host closes the port) and at most all of them; host -> controller equal
  the controller's rx_errors (its summary, and the last one it reported in a STATE of the
  deploy log);
- no corrupt value reaches the actuators: every COMMAND the controller applied (sim_robot
  `applied_log`) has the seq and the exact float32 values of one the host sent, and the
  COMMANDs not applied are exactly the corrupted ones;
- the loop kept running: the run completed without a fault (missed deadlines are reported;
  `safety.max_consecutive_overruns` is set high so a busy machine cannot end the run).

    python benchmarks/corruption_soak.py [--seconds 60] [--rate 500] [--corrupt 0.01]

Then, for comparison, the same run through the proxy with no fault (`proxy_no_faults_*`:
what the proxy process itself costs the loop on this machine) and straight to sim_robot
(`baseline_*`: the machine's own missed deadlines); `--no-baseline` skips both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._util import ROOT, machine, rate_policy  # noqa: E402

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _start(module: str, *args: str) -> tuple[subprocess.Popen, str]:
    p = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    line = p.stdout.readline()
    if not line.startswith("PORT "):
        p.kill()
        raise RuntimeError(f"{module} did not start: {line!r} {p.stderr.read()[-2000:]}")
    return p, line.split()[1]


def _stop(p: subprocess.Popen) -> tuple[dict, str]:
    if p.poll() is None:
        p.terminate()
    out, err = p.communicate(timeout=30)
    lines = [ln for ln in out.strip().splitlines() if ln.startswith("{")]
    return (json.loads(lines[-1]) if lines else {}), err


def _deploy(policy: Path, port: str, seconds: float, log_dir: Path) -> dict:
    """One deploy run to its end; its closing JSON summary (a fault is an error)."""
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "firmware_bridge.deploy",
            f"policy={policy}",
            f"port={port}",
            f"duration_s={seconds}",
            f"log_dir={log_dir}",
            "status=false",
            "safety.max_consecutive_overruns=1000000",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        env=ENV,
    )
    if p.returncode != 0:
        raise RuntimeError(f"deploy exited {p.returncode}: {p.stderr.strip()[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


@dataclass
class _Counts:
    """What each side recorded, counted: the host's log, the proxy's injections, the
    COMMANDs the controller applied."""

    sent: dict[int, np.ndarray]
    """The COMMANDs the host logged: seq -> float32 values."""
    states: list[dict]
    """The STATEs the host logged."""
    applied: np.ndarray
    """The COMMANDs sim_robot applied (its `applied_log`)."""
    mismatched: int
    """Applied COMMANDs whose seq or values are not those of one the host sent."""
    c2h_corrupt: int
    c2h_readable: int
    """Corrupted controller -> host frames up to the newest STATE the host logged."""
    h2c_corrupt: int
    commands_h2c: int
    """COMMAND frames the proxy forwarded host -> controller."""
    not_applied: int


def corruption_run(
    policy: Path,
    work: Path,
    seconds: float = 60.0,
    corrupt: float = 0.01,
    seed: int = 0,
) -> dict[str, Any]:
    """One run; the figures and the checks (the `ok_*` keys) as a dict."""
    work.mkdir(parents=True, exist_ok=True)
    applied_path = work / "applied.bin"
    s, wall, proxy_summary, sim_summary = _soak(policy, work, applied_path, seconds, corrupt, seed)
    c = _count(s, proxy_summary, applied_path)
    states = c.states
    return {
        "rate_hz": s["rate_hz"],
        "seconds": seconds,
        "corrupt_rate": corrupt,
        "wall_s": round(wall, 1),
        "ticks": s["ticks"],
        "faults": s["faults"],
        "missed_deadlines": s["missed_deadlines"],
        "missed_fraction": round(s["missed_deadlines"] / max(1, s["ticks"]), 4),
        "period_error_p99_us": s["period_error_p99_us"],
        "period_error_max_us": s["period_error_max_us"],
        "state_age_p99_ms": s["state_age_p99_ms"],
        "frames_c2h": proxy_summary["frames"]["c2h"],
        "frames_h2c": proxy_summary["frames"]["h2c"],
        "commands_sent": len(c.sent),
        "corrupted_c2h": c.c2h_corrupt,
        "corrupted_c2h_after_last_state_read": c.c2h_corrupt - c.c2h_readable,
        "host_dropped": s["dropped_frames"],
        "host_dropped_by_kind": s["dropped_by_kind"],
        "corrupted_h2c": c.h2c_corrupt,
        "controller_rx_errors": sim_summary["rx_errors"],
        "logged_rx_errors_last": states[-1]["rx_errors"] if states else None,
        "commands_applied": int(c.applied.size),
        "commands_not_applied": c.not_applied,
        "applied_not_as_sent": c.mismatched,
        "sim_tx_dropped": sim_summary["tx_dropped"],
        "log": s["log"],
        **_checks(s, seconds, sim_summary, c),
    }


def _soak(
    policy: Path, work: Path, applied_path: Path, seconds: float, corrupt: float, seed: int
) -> tuple[dict, float, dict, dict]:
    """sim_robot, the fault proxy in front of it, one deploy through the proxy: the deploy's
    summary, its wall time, the proxy's and sim_robot's summaries."""
    sim, sim_port = _start(
        "firmware_bridge.sim_robot", "robot=furuta", f"applied_log={applied_path}"
    )
    proxy = None
    try:
        proxy, port = _start(
            "firmware_bridge.faultproxy",
            f"upstream={sim_port}",
            f"corrupt={corrupt}",
            # the handshake, ENABLE and DISABLE are left intact: this measures the stream
            "frames=[STATE,COMMAND]",
            f"seed={seed}",
        )
        t0 = time.monotonic()
        s = _deploy(policy, port, seconds, work / "logs")
        wall = time.monotonic() - t0
    finally:
        proxy_summary, _ = _stop(proxy) if proxy is not None else ({}, "")
        sim_summary, _ = _stop(sim)
    return s, wall, proxy_summary, sim_summary


def _count(s: dict, proxy_summary: dict, applied_path: Path) -> _Counts:
    """The deploy log, the proxy's injections and the applied COMMANDs, counted."""
    from firmware_bridge.logs.rollout_log import read_log

    log = read_log(s["log"])
    sent = {c["seq"]: np.asarray(c["values"], np.float32) for c in log.topic("/command")}
    states = log.topic("/state")
    applied = np.fromfile(applied_path, dtype=[("seq", "<u4"), ("values", "<f4", (1,))])
    mismatched = sum(
        1
        for a in applied
        if int(a["seq"]) not in sent or sent[int(a["seq"])].tobytes() != a["values"].tobytes()
    )
    inj = proxy_summary["injected"]
    # A STATE corrupted after the newest one the host logged may have been in flight when
    # the host stopped reading: only those up to it must have been counted.
    last_read = states[-1]["seq"] if states else -1
    c2h_readable = sum(
        1 for q in proxy_summary["corrupted_seqs"]["c2h"] if q is not None and q <= last_read
    )
    return _Counts(
        sent=sent,
        states=states,
        applied=applied,
        mismatched=mismatched,
        c2h_corrupt=inj["c2h"].get("corrupt", 0),
        c2h_readable=c2h_readable,
        h2c_corrupt=inj["h2c"].get("corrupt", 0),
        commands_h2c=proxy_summary["frame_types"]["h2c"].get("COMMAND", 0),
        # COMMAND seqs the proxy corrupted: the ones the controller must not have applied
        not_applied=len(sent) - len({int(a["seq"]) for a in applied}),
    )


def _checks(s: dict, seconds: float, sim_summary: dict, c: _Counts) -> dict[str, bool]:
    """The `ok_*` keys: the run completed, every corrupt frame was counted on each side, and
    the controller applied exactly the COMMANDs sent, bit for bit, less the corrupted ones."""
    return {
        "ok_run": s["faults"] == [] and s["ticks"] == round(seconds * s["rate_hz"]),
        "ok_host_counted": c.c2h_readable <= s["dropped_frames"] <= c.c2h_corrupt,
        "ok_controller_counted": sim_summary["rx_errors"] == c.h2c_corrupt
        and (not c.states or c.states[-1]["rx_errors"] <= c.h2c_corrupt),
        "ok_actuators": c.mismatched == 0
        and c.not_applied == c.h2c_corrupt
        and int(c.applied.size) == c.commands_h2c - c.h2c_corrupt,
    }


def direct_run(policy: Path, work: Path, seconds: float) -> dict[str, Any]:
    """The same deploy straight to sim_robot (no proxy, no faults): the machine's own
    missed deadlines, to set the soak's figure against."""
    sim, port = _start("firmware_bridge.sim_robot", "robot=furuta")
    try:
        s = _deploy(policy, port, seconds, work / "logs-direct")
    finally:
        _stop(sim)
    return {
        "baseline_missed_deadlines": s["missed_deadlines"],
        "baseline_missed_fraction": round(s["missed_deadlines"] / max(1, s["ticks"]), 4),
        "baseline_period_error_p99_us": s["period_error_p99_us"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rate", type=int, default=500)
    ap.add_argument("--corrupt", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--no-baseline", action="store_true", help="skip the same run without the proxy"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        policy = rate_policy(Path(d) / "policy", args.rate)
        r = corruption_run(policy, Path(d) / "run", args.seconds, args.corrupt, args.seed)
        r["load_avg_after"] = round(os.getloadavg()[0], 2)
        if not args.no_baseline:
            clean = corruption_run(policy, Path(d) / "clean", args.seconds, 0.0, args.seed)
            r["proxy_no_faults_missed_deadlines"] = clean["missed_deadlines"]
            r["proxy_no_faults_missed_fraction"] = clean["missed_fraction"]
            r["proxy_no_faults_period_error_p99_us"] = clean["period_error_p99_us"]
            r["proxy_no_faults_load_avg_after"] = round(os.getloadavg()[0], 2)
            r.update(direct_run(policy, Path(d) / "run", args.seconds))
            r["baseline_load_avg_after"] = round(os.getloadavg()[0], 2)
    r.pop("log")
    r["ok"] = all(v for k, v in r.items() if k.startswith("ok_"))
    r["machine"] = machine()
    print(json.dumps(r))
    sys.exit(0 if r["ok"] else 1)


if __name__ == "__main__":
    main()
